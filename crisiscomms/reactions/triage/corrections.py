"""Our people's corrections of triage: recorded with who made them, audited, and read back
as a labelled set of our own by ``reactions train``."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.identity.identities import Identity
from crisiscomms.incident.service import audit
from crisiscomms.reactions.models import Reaction, ReactionCorrection, Sentiment
from crisiscomms.reactions.triage.corpora import Example, is_airline


def correct(engine: Engine, reaction_id: int, *, sentiment: Sentiment,
            needs_human: bool | None, actor: Identity) -> ReactionCorrection:
    """Record ``actor``'s label for a reaction (needs_human None: keep the reaction's), set it
    on the reaction, and audit it (``reaction.corrected``, with triage's labels), in one
    transaction; an unknown reaction changes nothing."""
    with Session(engine) as session:
        reaction = session.get(Reaction, reaction_id)
        if reaction is None:
            raise CrisisCommsError(f"no reaction {reaction_id}", field="reaction_id")
        flagged = reaction.needs_human if needs_human is None else needs_human
        row = ReactionCorrection(reaction_id=reaction_id, sentiment=sentiment,
                                 needs_human=flagged, actor=actor.id)
        session.add(row)
        was_sentiment, was_flagged = reaction.sentiment, reaction.needs_human
        # the reaction shows the person's label from now on (dashboards, spikes, replies);
        # triage's own is in the audit detail
        reaction.sentiment, reaction.needs_human = sentiment, flagged
        session.add(reaction)
        audit(session, actor, "reaction.corrected", reaction.incident_id,
              reaction_id=reaction_id, sentiment=sentiment.value, needs_human=flagged,
              was_sentiment=was_sentiment, was_needs_human=was_flagged)
        session.commit()
        session.refresh(row)
        return row


def corrected_examples(engine: Engine, weight: float) -> list[Example]:
    """The latest correction of each reaction as a training example (airline texts held out
    like everywhere else), oldest reaction first so the order is stable."""
    with Session(engine) as session:
        rows = session.exec(
            select(ReactionCorrection.reaction_id, ReactionCorrection.sentiment, Reaction.text)
            .join(Reaction, Reaction.id == ReactionCorrection.reaction_id)  # type: ignore[arg-type]
            .order_by(ReactionCorrection.reaction_id, ReactionCorrection.id)  # type: ignore[arg-type]
        ).all()
    latest: dict[int, tuple[str, str]] = {}
    for reaction_id, sentiment, text in rows:
        latest[reaction_id] = (str(sentiment), text)
    return [Example(text, label, "corrections", weight)
            for text, label in ((t, s) for s, t in latest.values())
            if text.strip() and not is_airline(text)]
