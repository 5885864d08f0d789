"""Publish claimed ledger rows through their channel: claim, verify approval, send, record."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.channels.base import (
    Channel,
    DeliveryResult,
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    RenderedMessage,
)
from crisiscomms.channels.retry import send_with_retry
from crisiscomms.errors import CrisisCommsError
from crisiscomms.incidents import facts_of, verify_approved
from crisiscomms.ledger import claim, decode_ids, record
from crisiscomms.models import (
    Delivery,
    DeliveryState,
    FactSheetVersion,
    Incident,
    Message,
    Recipient,
)
from crisiscomms.playbooks import Playbook, load_playbook
from crisiscomms.rendering import recipient_substitutions


@dataclass
class PublishReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: PublishReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        self.errors.extend(other.errors)


@lru_cache(maxsize=32)
def _playbook(name: str, playbooks_dir: Path) -> Playbook:
    return load_playbook(name, playbooks_dir)


def recipient_values(recipient: Recipient, playbook: Playbook) -> dict[str, str]:
    """The declared personal fields of one recipient, with the playbook's fallbacks."""
    first = (recipient.name or "").split()[0] if (recipient.name or "").split() else ""
    available = {
        "first_name": first,
        "name": recipient.name or "",
        "email": recipient.email,
        "plan": recipient.plan or "",
    }
    return {
        fieldname: (available.get(fieldname) or spec.fallback)
        for fieldname, spec in playbook.recipient_fields.items()
    }


def _thread_root(session: Session, incident_id: int) -> str | None:
    """The first X post of the incident: later updates reply to it, keeping one thread."""
    return session.exec(
        select(Delivery.provider_id)
        .where(Delivery.incident_id == incident_id, Delivery.channel == "x",
               Delivery.state == DeliveryState.sent)
        .order_by(col(Delivery.id))
    ).first()


def _outbound(session: Session, delivery: Delivery, playbooks_dir: Path) -> OutboundBatch:
    message = session.get(Message, delivery.message_id)
    incident = session.get(Incident, delivery.incident_id)
    assert message is not None and incident is not None
    verify_approved(session, message)
    facts_row = session.exec(select(FactSheetVersion).where(
        FactSheetVersion.incident_id == incident.id,
        FactSheetVersion.version == message.facts_version)).one()
    playbook = _playbook(incident.playbook, playbooks_dir)
    recipients: list[OutboundRecipient] = []
    ids = decode_ids(delivery.recipient_ids)
    if ids:
        rows = session.exec(select(Recipient).where(col(Recipient.id).in_(ids))).all()
        by_id = {r.id: r for r in rows}
        for rid in ids:
            r = by_id.get(rid)
            if r is not None and r.consent:
                recipients.append(OutboundRecipient(
                    id=rid, address=r.email,
                    substitutions=recipient_substitutions(recipient_values(r, playbook))))
    stage = playbook.stage(message.stage)
    return OutboundBatch(
        key=delivery.key,
        batch_no=delivery.batch_no,
        facts=facts_of(facts_row),
        incident_status=str(stage.incident_status),
        message=RenderedMessage(
            playbook=incident.playbook, stage=message.stage, channel=message.channel,
            locale=message.locale, parts=json.loads(message.parts_json),
            content_hash=message.content_hash),
        recipients=recipients,
        reply_to=_thread_root(session, delivery.incident_id) if message.channel == "x" else None,
    )


def publish_deliveries(
    engine: Engine,
    channels: Mapping[str, Channel],
    delivery_ids: Sequence[int],
    *,
    playbooks_dir: Path,
    max_attempts: int,
) -> PublishReport:
    """Claim the given planned rows and publish each through its channel, recording results."""
    report = PublishReport()
    with Session(engine, expire_on_commit=False) as session:
        claimed = claim(session, delivery_ids)
        report.skipped = len(delivery_ids) - len(claimed)
        for delivery_id in claimed:
            delivery = session.get(Delivery, delivery_id)
            assert delivery is not None
            try:
                batch = _outbound(session, delivery, playbooks_dir)
            except CrisisCommsError as exc:
                result, attempts = DeliveryResult.permanent(str(exc)), 1
            else:
                channel = channels.get(delivery.channel)
                if channel is None:
                    result, attempts = DeliveryResult.permanent(
                        f"channel {delivery.channel} is not configured"), 1
                elif not batch.recipients and channel.personal:
                    result, attempts = DeliveryResult.sent(None), 1
                else:
                    try:
                        result, attempts = send_with_retry(channel, batch,
                                                           max_attempts=max_attempts)
                    except ValueError as exc:  # a batch the provider can never accept
                        result, attempts = DeliveryResult.permanent(str(exc)), 1
            record(session, delivery_id, result, attempts)
            if result.outcome is Outcome.sent:
                report.sent += delivery.recipient_count
            else:
                report.failed += delivery.recipient_count
                report.errors.append(
                    f"{delivery.channel} batch {delivery.batch_no}: {result.reason}")
    return report
