"""Cue lists: the phrases that make a reaction need a human (complaint, safety, legal, press).

Cues come from two places, merged: the built-in defaults per locale (``default_cues.yaml``
beside this module, so a playbook without a ``listening:`` section still flags "lawyer",
"injured", "journalist"... in en/es/fr/de/ja) and the playbook's ``listening.cues``.

Matching, on case- and accent-folded text (:func:`~crisiscomms.reactions.triage.text.fold`):

- cues in Latin (and other spaced) scripts match whole words only: "sue" matches "I will sue"
  but not "issue"; a cue ending in ``*`` is a stem ("injur*" matches "injured", "injury");
  multi-word cues ("nobody answering") match consecutive words;
- cues holding Japanese or other CJK characters match anywhere (those scripts have no spaces).

Every locale's cues are tried on every text, whatever its detected language: a recall flags
"burn" in an English reply to a German email. Matching is dictionary look-ups over the word
n-grams of the text (not a regex of hundreds of alternatives), so it costs a few microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TypeVar

import yaml

from crisiscomms.playbook.listening import NEEDS_HUMAN_REASONS
from crisiscomms.reactions.triage.text import fold, has_cjk, tokens

K = TypeVar("K", str, tuple[str, ...])
CUE_REASONS = tuple(r for r in NEEDS_HUMAN_REASONS if r != "vip")
"""Reasons a cue list may name (a VIP is an author, not a phrase)."""
CueLists = Mapping[str, Mapping[str, Sequence[str]]]
"""Per locale, per reason, phrases (the shape of ``Listening.cues``)."""


@lru_cache(maxsize=1)
def other_lexicon() -> CueMatcher:
    """The small es/fr/de/ja sentiment lexicon (``lexicon_other.yaml``), compiled once."""
    raw = yaml.safe_load(
        resources.files(__package__).joinpath("lexicon_other.yaml").read_text("utf-8"))
    return CueMatcher.compile(raw, reasons=("positive", "negative"))


@lru_cache(maxsize=1)
def default_cues() -> dict[str, dict[str, tuple[str, ...]]]:
    """The built-in cue lists (read once per process from the package's data file)."""
    raw = yaml.safe_load(
        resources.files(__package__).joinpath("default_cues.yaml").read_text("utf-8"))
    return {locale: {reason: tuple(phrases) for reason, phrases in by_reason.items()}
            for locale, by_reason in raw.items()}


def merge(*cue_lists: CueLists) -> dict[str, dict[str, tuple[str, ...]]]:
    """Union of cue lists, per locale and reason, in order, without duplicates."""
    out: dict[str, dict[str, list[str]]] = {}
    for cues in cue_lists:
        for locale, by_reason in cues.items():
            for reason, phrases in by_reason.items():
                have = out.setdefault(locale, {}).setdefault(reason, [])
                have.extend(p for p in phrases if p not in have)
    return {loc: {r: tuple(p) for r, p in by.items()} for loc, by in out.items()}


@dataclass
class CueMatcher:
    """Compiled cue lists: ``match(folded, words)`` gives the reasons (``"safety: burn"``)."""

    words: dict[str, list[str]] = field(default_factory=dict)
    """Folded one-word cue → reasons."""
    phrases: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    """Word tuple (two words or more) → reasons."""
    first_words: set[str] = field(default_factory=set)
    """The first words of ``phrases``: only there is a phrase looked for."""
    stems: dict[str, list[str]] = field(default_factory=dict)
    """Folded stem → reasons (cue ``injur*``, reason ``"safety: injur"``)."""
    stem_lengths: tuple[int, ...] = ()
    substrings: dict[str, list[str]] = field(default_factory=dict)
    """Folded CJK cue → reasons."""
    longest: int = 1
    _compiled: set[tuple[str, str]] = field(default_factory=set, repr=False)
    """(reason, folded cue) already in: accent variants ("störung", "storung") fold to one."""
    _hits: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """Word → its one-word and stem hits (words that hit something: few)."""
    _misses: set[str] = field(default_factory=set, repr=False)
    """Words seen that hit nothing: each word is looked up once (bounded: cleared past
    ``_SEEN_MAX`` words)."""

    @classmethod
    def compile(cls, cues: CueLists,
                reasons: Sequence[str] = CUE_REASONS) -> CueMatcher:
        """Compile cue lists; an unknown reason or an empty cue is a clear error.
        ``reasons``: the allowed reasons (the lexicon of ``lexicon_other.yaml`` uses
        ``positive`` and ``negative``)."""
        m = cls()
        for locale, by_reason in cues.items():
            for reason, items in by_reason.items():
                if reason not in reasons:
                    raise ValueError(f"cues.{locale}.{reason}: unknown reason (expected one "
                                     f"of {', '.join(reasons)})")
                for cue in items:
                    m._add(locale, reason, cue)
        m.stem_lengths = tuple(sorted({len(s) for s in m.stems}))
        m.first_words = {p[0] for p in m.phrases}
        return m

    def _add(self, locale: str, reason: str, cue: str) -> None:
        folded = fold(cue).strip()
        bare = folded.rstrip("*").strip()
        label = f"{reason}: {cue.rstrip('*').strip()}"
        if not bare:
            raise ValueError(f"cues.{locale}.{reason}: an empty cue")
        if (reason, folded) in self._compiled:
            return
        self._compiled.add((reason, folded))
        if has_cjk(folded):
            _put(self.substrings, bare, label)
            return
        words = tuple(tokens(bare))
        if not words:
            raise ValueError(f"cues.{locale}.{reason}: {cue!r} has no word to match")
        if folded.endswith("*") and len(words) == 1:
            _put(self.stems, words[0], label)
        elif len(words) == 1:
            _put(self.words, words[0], label)
        else:
            _put(self.phrases, words, label)
            self.longest = max(self.longest, len(words))

    def _word_hits(self, word: str) -> list[str]:
        hits = list(self.words.get(word, ()))
        for length in self.stem_lengths:
            if len(word) < length:
                break
            hits.extend(self.stems.get(word[:length], ()))
        return hits

    def match(self, folded: str, words: Sequence[str]) -> list[str]:
        """Reasons matched in one text (folded, and its :func:`tokens`), each once, in order."""
        found: list[str] = []
        distinct = set(words)
        unknown = distinct - self._misses  # set operations in C: most words hit nothing
        if unknown:
            hits = self._hits
            for w in unknown:
                if w not in hits:
                    hit = self._word_hits(w)
                    if hit:
                        hits[w] = hit
                    else:
                        if len(self._misses) >= _SEEN_MAX:
                            self._misses.clear()
                        self._misses.add(w)
            if not distinct.isdisjoint(hits):
                for w in words:
                    word_hit = hits.get(w)
                    if word_hit:
                        found.extend(word_hit)
        if not distinct.isdisjoint(self.first_words):
            n = len(words)
            for i, w in enumerate(words):
                if w in self.first_words:
                    for k in range(2, min(self.longest, n - i) + 1):
                        phrase_hit = self.phrases.get(tuple(words[i:i + k]))
                        if phrase_hit:
                            found.extend(phrase_hit)
        if self.substrings and not folded.isascii():
            for cue, hit in self.substrings.items():
                if cue in folded:
                    found.extend(hit)
        return list(dict.fromkeys(found)) if found else found


_SEEN_MAX = 200_000


def _put(table: dict[K, list[str]], key: K, label: str) -> None:
    have = table.setdefault(key, [])
    if label not in have:
        have.append(label)


def cue_reasons(reasons: Iterable[str]) -> set[str]:
    """The reason kinds (``complaint``, ``safety``...) among reason strings."""
    return {r.split(":", 1)[0] for r in reasons}
