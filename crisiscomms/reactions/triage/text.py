"""Folding and tokenizing of reaction text, shared by cue matching, the model and training.

One function each, used identically at training and at scoring time: a model trained on one
tokenization and scored with another silently loses accuracy, so nothing else tokenizes.
"""

from __future__ import annotations

import re
import unicodedata

_LATIN_MARKS = re.compile("[\u0300-\u036f]")
"""Combining diacritics of Latin scripts (NFKD splits "é" into "e" + U+0301). Japanese voicing
marks (U+3099/U+309A) are outside this block, so "バ" does not fold into "ハ"."""
_SPACES = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+|[!?]")
_URL = re.compile(r"https?://\S+")
_HANDLE = re.compile(r"@\w+")
_NUMBER = re.compile(r"\b\d+\b")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff66-\uff9f]")
"""Kana, CJK ideographs, Hangul, half-width katakana: scripts written without spaces."""
_KANA = re.compile("[\u3040-\u30ff\uff66-\uff9f]")
_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
SHAPES = ("caps", "exclaims", "questions")
"""Shapes of the raw text the model sees as features (``~cue:caps``...): two or more words
in capitals of three letters or more ("WHY IS NOBODY ANSWERING"), "!!", "??" or "?!"."""


def shapes(text: str) -> set[str]:
    """The :data:`SHAPES` of one raw (unfolded) text: shouting and repeated punctuation."""
    out: set[str] = set()
    if "!!" in text:
        out.add("exclaims")
    if "??" in text or "?!" in text or "!?" in text:
        out.add("questions")
    if len(_CAPS_WORD.findall(text)) >= 2:
        out.add("caps")
    return out


def fold(text: str) -> str:
    """Case- and accent-folded text with runs of white space as one space.

    ``"Réfund  NOW"`` → ``"refund now"``; full-width forms become ASCII (NFKD), so "？" is "?".
    """
    if text.isascii():
        return _SPACES.sub(" ", text.lower())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return _SPACES.sub(" ", unicodedata.normalize("NFC", _LATIN_MARKS.sub("", decomposed)))


def tokens(folded: str) -> list[str]:
    """Words of folded text; links become ``_url_``, handles ``_user_``, numbers ``_num_``;
    ``!`` and ``?`` are kept. Substitutions and split are regular expressions (C speed).

    A run of CJK characters is one token: the model is English-only and the cue matcher looks
    for CJK cues inside the folded text, not in tokens.
    """
    if "http" in folded:
        folded = _URL.sub(" _url_ ", folded)
    if "@" in folded:
        folded = _HANDLE.sub(" _user_ ", folded)
    return _TOKEN.findall(_NUMBER.sub("_num_", folded))


def has_cjk(text: str) -> bool:
    """True when ``text`` holds a character of a script written without spaces."""
    return _CJK.search(text) is not None


def has_kana(text: str) -> bool:
    """Hiragana or katakana: Japanese, whatever a statistical detector says about a short text."""
    return _KANA.search(text) is not None
