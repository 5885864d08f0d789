"""The status page's interface strings, one JSON catalogue per language (``locales/<lang>.json``).

Incident text comes from approved templates; these are only the page's own words (headings,
status names, buttons). A locale without a catalogue falls back to its language
(``pt-BR`` → ``pt``), then to English; a key missing from a catalogue falls back to English.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

LOCALES_DIR = Path(__file__).parent / "locales"
FALLBACK = "en"


@lru_cache(maxsize=32)
def _load(lang: str) -> dict[str, str]:
    path = LOCALES_DIR / f"{lang}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def available() -> list[str]:
    return sorted(p.stem for p in LOCALES_DIR.glob("*.json"))


class Catalog:
    """Strings of one locale: ``catalog("key", name=value)`` formats with ``str.format``."""

    def __init__(self, locale: str) -> None:
        self.locale = locale
        lang = locale.replace("_", "-").split("-")[0].lower()
        self.language = lang if _load(lang) else FALLBACK
        self._strings = {**_load(FALLBACK), **_load(self.language)}
        self._escaped: dict[str, Markup] = {}

    def raw(self, key: str) -> str:
        try:
            return self._strings[key]
        except KeyError:
            raise KeyError(f"status page string {key!r} is missing from {LOCALES_DIR}/"
                           f"{FALLBACK}.json") from None

    def __call__(self, key: str, **values: Any) -> str:
        text = self.raw(key)
        return text.format(**values) if values else text

    def markup(self, key: str, **values: Any) -> Markup:
        """For HTML: the string escaped, values escaped unless they are Markup already."""
        escaped = self._escaped.get(key)
        if escaped is None:
            escaped = self._escaped[key] = Markup(escape(self.raw(key)))
        if not values:
            return escaped
        # str.format on the escaped pattern with escaped values (Markup.format is the same
        # result through string.Formatter, several times slower on a thousand pages)
        safe = {k: v if isinstance(v, Markup) else escape(v) for k, v in values.items()}
        return Markup(str.format(escaped, **safe))

    def names(self) -> set[str]:
        return set(self._strings)
