"""A pre-approved reply sent by a person to a flagged reaction (the dashboard's reactions page).

The watcher never answers a reaction triage flagged (a lawyer, an injury, a journalist: a person
reads it first). Once a person has read it, they may still answer it with one of the playbook's
pre-approved reply templates (``templates/<playbook>/_replies/<rule>...``): never free text, so
nothing unapproved reaches the public. Why here and not in the page: it is the watcher's own
path (``replies.py``: the approval-checking renderer, the status page link, the ledger row
written before the send with the author's deterministic key, ``send_once``, the outcome
recorded), with the person as the audited actor; only the choice of rule is the person's.

Once per author per incident and source, as for the watcher (``ReactionReply`` is unique on it):
a second reply to the same person is refused before anything is rendered, and a race with the
watcher is refused by the unique key. Refusals are :class:`ReplyRefused` naming the field at
fault (``reaction``, ``rule``, ``channel``); nothing is written then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.sender import SendPolicy
from crisiscomms.incident.models import Incident, Message
from crisiscomms.incident.service import facts_of, get_incident, latest_facts
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.models import Reaction, ReactionReply
from crisiscomms.reactions.replies import (
    REPLYABLE,
    ReplyRenderer,
    ReplyReport,
    _deliver,
    _plan,
    _undeliverable,
    reply_locale,
    send_policy,
)
from crisiscomms.render.approvals import ApprovalLock


class ReplyRefused(CrisisCommsError):
    """A person's reply that cannot be sent; nothing was written."""


@dataclass(frozen=True)
class Answerable:
    """A flagged reaction a person may still answer (its author has had no reply)."""

    id: int
    source: str
    channel: str | None
    author: str
    text: str
    reasons: tuple[str, ...]

    def label(self) -> str:
        return f"#{self.id} · {self.source} · {self.author}"


@dataclass(frozen=True)
class SentReply:
    delivery_key: str
    state: str
    channel: str
    locale: str
    text: str
    error: str | None


def answerable_flagged(session: Session, incident_ref: str, *,
                       limit: int = 100) -> list[Answerable]:
    """The incident's flagged reactions from a source one can answer whose author has had no
    reply yet (newest first)."""
    incident = get_incident(session, incident_ref)
    replied = exists().where(col(ReactionReply.incident_id) == col(Reaction.incident_id),
                             col(ReactionReply.source) == col(Reaction.source),
                             col(ReactionReply.author) == col(Reaction.author))
    rows = session.execute(
        select(Reaction).where(col(Reaction.incident_id) == incident.id,
                               col(Reaction.needs_human).is_(True),
                               col(Reaction.source).in_([s.value for s in REPLYABLE]),
                               ~replied)
        .order_by(col(Reaction.id).desc()).limit(limit)).scalars().all()
    return [Answerable(r.id or 0, str(r.source), r.channel, r.author, r.text,
                       tuple(json.loads(r.reasons_json or "[]"))) for r in rows]


def send_reply(engine: Engine, settings: Settings, channels: Mapping[str, Channel], *,
               incident_ref: str, reaction_id: int, rule_id: str, actor: str,
               policy: SendPolicy | None = None) -> SentReply:
    """Render the rule's approved reply for the reaction's channel and locale, write it to the
    ledger (audited as ``actor``) and send it once; ReplyRefused (nothing written) when the
    reaction is not a flagged one of this incident that can be answered, its author was
    answered already, the rule is not the playbook's, or its template is not fit to send."""
    with Session(engine, expire_on_commit=False) as session:
        incident = get_incident(session, incident_ref)
        reaction = session.get(Reaction, reaction_id)
        if reaction is None or reaction.incident_id != incident.id:
            raise ReplyRefused(f"reaction {reaction_id} is not one of incident {incident_ref}",
                               field="reaction", values=(str(reaction_id),))
        where = f"reaction {reaction_id}"
        if not reaction.needs_human:
            raise ReplyRefused(f"{where} is not flagged: the watcher answers it",
                               field="reaction")
        if reaction.source not in REPLYABLE:
            raise ReplyRefused(f"{where} came from {reaction.source}, which cannot be answered "
                               "on its channel", field="reaction")
        playbook = load_playbook(incident.playbook, settings.playbooks_dir)
        rules = [rule.id for rule in playbook.listening.replies]
        if rule_id not in rules:
            raise ReplyRefused(f"playbook {playbook.name} has no reply {rule_id!r}; replies: "
                               f"{', '.join(rules) or 'none'}", field="rule", values=(rule_id,))
        channel = channels.get(str(reaction.channel))
        if channel is None:
            raise ReplyRefused(f"{where}: channel {reaction.channel} is not configured here",
                               field="channel")
        answered = session.execute(select(col(ReactionReply.id)).where(
            col(ReactionReply.incident_id) == incident.id,
            col(ReactionReply.source) == str(reaction.source),
            col(ReactionReply.author) == reaction.author)).first()
        if answered is not None:
            raise ReplyRefused(f"{where}: {reaction.author} was answered once already on "
                               f"incident {incident_ref} (one reply per person)",
                               field="reaction")
        if channel.recipients is not None and _undeliverable(session, reaction.author):
            raise ReplyRefused(f"{where}: {reaction.author} bounces or reported us as spam; "
                               "nobody writes to them", field="reaction")
        assert incident.id is not None
        facts_row = latest_facts(session, incident.id)
        facts = facts_of(facts_row)
        locale = reply_locale(reaction, playbook, playbook.default_locale)
        lock = ApprovalLock(settings.templates_dir)
        rendered = ReplyRenderer(settings.templates_dir, lock).render(
            playbook, rule_id, channel, locale, facts, author=reaction.author,
            author_name=reaction.author_name, production=not incident.drill)
        planned = _plan(session, incident, reaction, rule_id, locale, channel,
                        facts_row.version, rendered, actor=actor)
        if planned is None:
            raise ReplyRefused(f"{where}: {reaction.author} was just answered (by the watcher "
                               "or another person)", field="reaction")
    report = ReplyReport()
    _deliver(engine, lock, playbook, incident, planned, reaction, channel, facts,
             policy or send_policy(settings), report)
    return _outcome(engine, planned.key)


def _outcome(engine: Engine, key: str) -> SentReply:
    with Session(engine) as session:
        delivery = session.execute(select(Delivery).where(col(Delivery.key) == key)).scalar_one()
        message = session.get(Message, delivery.message_id)
        parts = json.loads(message.parts_json) if message is not None else {}
        text = str(parts.get("text") or parts.get("subject") or "")
        return SentReply(delivery.key, DeliveryState(delivery.state).value, delivery.channel,
                         delivery.locale, text, delivery.error)


def incident_playbook(engine: Engine, incident_ref: str) -> str:
    """The playbook an incident runs (the reply rules to offer)."""
    with Session(engine) as session:
        incident: Incident = get_incident(session, incident_ref)
        return incident.playbook
