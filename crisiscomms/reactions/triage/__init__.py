"""Triage of reactions, offline: language, sentiment and needs-a-human, with reasons.

The one entry point is :class:`Triager`: built once per process (or per playbook, since the cue
lists are the playbook's), it scores texts in batches::

    triager = Triager.for_playbook(playbook.listening)
    verdicts = triager.score(["still waiting 3 hours", ...], authors=["@ann", ...])

Receivers, ``crisiscomms reactions score`` and the drill all go through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from crisiscomms.playbook.listening import Listening
from crisiscomms.reactions.models import Sentiment


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
    """Scores texts; ``cues`` per locale per reason, ``vip`` authors always flagged."""

    cues: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    vip: Sequence[str] = ()

    @classmethod
    def for_playbook(cls, listening: Listening | None = None) -> Triager:
        if listening is None:
            return cls()
        return cls(cues=listening.cues, vip=listening.vip)

    def score(self, texts: Sequence[str], *,
              authors: Sequence[str | None] | None = None) -> list[Verdict]:
        """One verdict per text, in order."""
        who = list(authors) if authors is not None else [None] * len(texts)
        return [self._one(text, author) for text, author in zip(texts, who, strict=True)]

    def _one(self, text: str, author: str | None) -> Verdict:
        folded = text.casefold()
        reasons = [f"{reason}: {cue}"
                   for by_reason in self.cues.values()
                   for reason, phrases in by_reason.items()
                   for cue in phrases if cue.casefold() in folded]
        if author is not None and _is_vip(author, self.vip):
            reasons.append(f"vip: {author}")
        negative = any(r.startswith("complaint") for r in reasons)
        return Verdict(sentiment=Sentiment.negative if negative else Sentiment.neutral,
                       score=-0.5 if negative else 0.0, needs_human=bool(reasons),
                       reasons=tuple(dict.fromkeys(reasons)))


def _is_vip(author: str, vip: Sequence[str]) -> bool:
    who = author.casefold()
    for entry in vip:
        e = entry.casefold()
        if who == e or (e.startswith("@") and "." in e and who.endswith(e)):
            return True
    return False
