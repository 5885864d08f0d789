"""Triage of reactions, offline: language, sentiment and needs-a-human, with reasons.

The one entry point is :class:`Triager`: built once per process (or per playbook, since the cue
lists are the playbook's), it scores texts in batches::

    triager = Triager.for_playbook(playbook.listening)
    verdicts = triager.score(["still waiting 3 hours", ...], authors=["@ann", ...])

Receivers, ``crisiscomms reactions score`` and the drill all go through it. What it does, per
batch (docs/triage.md has the model card and the figures):

1. fold (case, accents) and tokenize each text once (``text.py``);
2. match the cue lists, built-in per locale plus the playbook's (``cues.py``): each hit is a
   reason (``"safety: burn"``) and makes the reaction need a human; so does a VIP author;
3. detect the language (``language.py``, fastText's offline model);
4. English (or undetected) text: the sentiment model (``model.py``, numpy, a linear model over
   n-grams, VADER-lexicon, cue and text-shape features, trained by ``training.py``) gives
   P(negative, neutral, positive), moved to the prior of reactions (``model.REACTION_PRIOR``);
   score = P(positive) - P(negative). Other languages: no model we trust
   (issue 11), so a small hand-written lexicon (``lexicon_other.yaml``) and the cues;
5. the domain rule: a complaint, safety or legal cue makes the text negative unless the model
   is confident it is positive ("thanks again!").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crisiscomms.playbook.listening import Listening
from crisiscomms.reactions.models import Sentiment
from crisiscomms.reactions.triage import language
from crisiscomms.reactions.triage import model as sentiment_model
from crisiscomms.reactions.triage.cues import (
    CueMatcher,
    cue_reasons,
    default_cues,
    merge,
    other_lexicon,
)
from crisiscomms.reactions.triage.model import SentimentModel
from crisiscomms.reactions.triage.text import fold, shapes, tokens

NEGATIVE_KINDS = frozenset({"complaint", "safety", "legal"})
"""Cue kinds that make a text negative (press does not: a journalist asking is neutral)."""
CONFIDENT_POSITIVE = 0.7
"""P(positive) above which a negative cue does not override the model ("thanks again!")."""
CUE_SCORE = -0.5
"""Score of a text made negative by a cue (at most; the model may say more negative)."""

_SENTIMENT = {s.value: s for s in Sentiment}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What triage says about one text."""

    sentiment: Sentiment
    score: float
    """Sentiment in [-1, 1], negative to positive."""
    needs_human: bool
    reasons: tuple[str, ...] = ()
    """``"safety: burn"``, ``"vip: @bigcustomer"``...: the reason, a colon, what matched."""
    language: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"sentiment": self.sentiment.value, "needs_human": self.needs_human,
                "reasons": list(self.reasons), "language": self.language,
                "score": round(self.score, 4)}


@dataclass
class Triager:
    """Scores texts; ``cues`` per locale per reason (added to the built-in ones), ``vip``
    authors always flagged. ``model``: a loaded model to use; else the one at ``model_path``,
    else the shipped one (loaded once per process on first use). ``use_model=False``: cues
    only (the baseline the figures compare with)."""

    cues: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    vip: Sequence[str] = ()
    model_path: Path | None = None
    model: SentimentModel | None = None
    use_model: bool = True
    defaults: bool = True
    """Merge the built-in cue lists (``default_cues.yaml``) under the playbook's."""
    _matcher: CueMatcher | None = field(default=None, init=False, repr=False)
    _vip: tuple[str, ...] = field(default=(), init=False, repr=False)

    @classmethod
    def for_playbook(cls, listening: Listening | None = None, *,
                     model_path: Path | None = None) -> Triager:
        if listening is None:
            return cls(model_path=model_path)
        return cls(cues=listening.cues, vip=listening.vip, model_path=model_path)

    @property
    def matcher(self) -> CueMatcher:
        """The compiled cue lists (compiled on first use; a bad cue is a ValueError)."""
        if self._matcher is None:
            cues = merge(default_cues(), self.cues) if self.defaults else merge(self.cues)
            self._matcher = CueMatcher.compile(cues)
            self._vip = tuple(v.casefold() for v in self.vip)
        return self._matcher

    def sentiment_model(self) -> SentimentModel | None:
        if not self.use_model:
            return None
        if self.model is None:
            self.model = sentiment_model.load(self.model_path)
        return self.model

    def score(self, texts: Sequence[str], *,
              authors: Sequence[str | None] | None = None) -> list[Verdict]:
        """One verdict per text, in order."""
        who = list(authors) if authors is not None else [None] * len(texts)
        if len(who) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(who)} authors")
        matcher, model = self.matcher, self.sentiment_model()
        folded = [fold(t) for t in texts]
        words = [tokens(f) for f in folded]
        reasons = [matcher.match(f, w) for f, w in zip(folded, words, strict=True)]
        kinds = [cue_reasons(r) for r in reasons]
        langs = [language.detect_words(t, w) for t, w in zip(texts, words, strict=True)]
        if model is not None:
            proba = model.predict_words(words, [k | shapes(t) for k, t in
                                                zip(kinds, texts, strict=True)])
            labels = model.labels(proba)
            p_neg, p_pos = proba[:, 0].tolist(), proba[:, 2].tolist()
        out = []
        for i, text_reasons in enumerate(reasons):
            lang = langs[i]
            label, score, positive = "neutral", 0.0, 0.0
            if not words[i]:
                pass  # no word, no evidence: neutral (the model's prior alone leans negative)
            elif model is not None and lang in (None, "en"):
                label, positive = labels[i], p_pos[i]
                score = positive - p_neg[i]
            elif lang not in (None, "en"):
                label, score = _lexicon_sentiment(folded[i], words[i])
            if kinds[i] & NEGATIVE_KINDS and positive < CONFIDENT_POSITIVE:
                label, score = "negative", min(score, CUE_SCORE)
            # the label decides at a tuned threshold, the score is P(pos) - P(neg): never let
            # the sign of one contradict the other
            if label == "positive":
                score = max(score, 0.0)
            elif label == "negative":
                score = min(score, 0.0)
            author = who[i]
            if author is not None and _is_vip(author, self._vip):
                text_reasons = [*text_reasons, f"vip: {author}"]
            out.append(Verdict(sentiment=_SENTIMENT[label], score=score,
                               needs_human=bool(text_reasons), reasons=tuple(text_reasons),
                               language=lang))
        return out


LEXICON_SCORE = 0.5
"""Score of a text the small lexicon calls positive (or, negated, negative): a lexicon of a few
dozen words per language deserves less confidence than the model."""


def _lexicon_sentiment(folded: str, words: Sequence[str]) -> tuple[str, float]:
    """es/fr/de/ja (no model we trust): more positive than negative words of
    ``lexicon_other.yaml`` is positive, the reverse negative, else neutral."""
    hits = other_lexicon().match(folded, words)
    if not hits:
        return "neutral", 0.0
    pos = sum(h.startswith("positive") for h in hits)
    neg = len(hits) - pos
    if pos == neg:
        return "neutral", 0.0
    return ("positive", LEXICON_SCORE * (pos - neg) / len(hits)) if pos > neg else (
        "negative", LEXICON_SCORE * (pos - neg) / len(hits))


def _is_vip(author: str, vip: Sequence[str]) -> bool:
    """``vip`` entries are case-folded: a handle or address, or ``@domain.example``."""
    who = author.casefold()
    return any(who == e or (e.startswith("@") and "." in e and who.endswith(e)) for e in vip)


__all__ = ["Triager", "Verdict"]
