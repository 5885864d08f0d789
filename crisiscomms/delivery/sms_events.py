"""What Twilio tells us after an SMS: delivery status callbacks and STOP/START/HELP replies.

- :func:`record_status`: a status callback (``MessageStatus`` ``queued``/``sent``/
  ``delivered``/``undelivered``/``failed``, with ``ErrorCode``) is stored once as a
  ``DeliveryEvent`` of channel ``sms`` (key ``twilio:<MessageSid>:<status>``: Twilio retries a
  callback, a replay stores nothing) and counted in the per-minute rollup; ``sent`` or
  ``delivered`` settles a ledger row a crash left ``sending`` or ``unconfirmed``
  (``ledger.confirm_by_key``). An error saying the number opted out at the carrier (21610) or
  cannot receive SMS (21614) marks its recipients as opted out, so they are not planned again.
- :func:`opt_out` / :func:`opt_in`: a STOP (or synonym) stops every SMS to that number, now
  and for rows planned before it (the sender reads the flag again); START lifts it. Email is
  unaffected: STOP answers the SMS channel.
- :func:`help_reply`: the answer to HELP, from the workspace's approved
  ``templates/_sms/help.<locale>.j2`` in the language of the recipient with that number.

The HTTP part (signatures, form parsing) is ``api/sms.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.delivery.ledger import confirm_by_key
from crisiscomms.delivery.models import Delivery, DeliveryEvent
from crisiscomms.delivery.rollup import add_to_rollup, rollup_counts
from crisiscomms.render.approvals import ApprovalLock
from crisiscomms.render.environment import make_environment

STATUSES = frozenset({"accepted", "queued", "sending", "sent", "delivered", "undelivered",
                      "failed", "read", "canceled", "scheduled", "receiving", "received"})
"""Twilio's message statuses (``MessageStatus``)."""
CONFIRMING = frozenset({"sent", "delivered"})
# Twilio's default opt-out, opt-in and help keywords (Advanced Opt-Out)
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                        "REVOKE", "STOP ALL"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def keyword(body: str) -> str | None:
    """``STOP``, ``START`` or ``HELP`` when ``body`` is one of Twilio's opt-out, opt-in or help
    keywords (case and surrounding spaces ignored), else None."""
    word = " ".join(body.strip().upper().split())
    if word in STOP_WORDS:
        return "STOP"
    if word in START_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None


OPTED_OUT_CODES = frozenset({"21610", "21614"})
"""Twilio errors meaning this number must not be texted again: it replied STOP (21610), or it
cannot receive SMS (21614, a landline)."""


@dataclass(frozen=True)
class StatusCallback:
    key: str
    recipient_id: int | None
    message_sid: str
    status: str
    to: str | None = None
    error_code: str | None = None


@dataclass
class StatusResult:
    stored: bool = False
    confirmed: bool = False
    opted_out: int = 0


def record_status(session: Session, callback: StatusCallback, *, channel: str,
                  now: datetime | None = None) -> StatusResult:
    """Store one status callback of an SMS ledger row of ``channel`` (the SMS channel's
    name, from the registry) once, and settle what it proves; commits."""
    result = StatusResult()
    moment = now or utcnow()
    row = session.execute(
        select(col(Delivery.id), col(Delivery.incident_id)).where(
            col(Delivery.key) == callback.key, col(Delivery.channel) == channel)).first()
    delivery_id, incident_id = (int(row[0]), int(row[1])) if row else (None, None)
    reason = f"error {callback.error_code}" if callback.error_code else None
    values = {"event_key": f"twilio:{callback.message_sid}:{callback.status}"[:128],
              "delivery_id": delivery_id, "incident_id": incident_id,
              "recipient_id": callback.recipient_id, "channel": channel,
              "event": callback.status, "reason": reason, "occurred_at": moment,
              "created_at": moment}
    table = DeliveryEvent.__table__  # type: ignore[attr-defined]
    base = (sqlite.insert(table) if session.get_bind().dialect.name == "sqlite"
            else postgresql.insert(table))
    stmt = base.on_conflict_do_nothing(index_elements=["event_key"]).returning(
        col(DeliveryEvent.incident_id), col(DeliveryEvent.channel), col(DeliveryEvent.event),
        col(DeliveryEvent.occurred_at))
    connection = session.connection()
    inserted = connection.execute(stmt, [values]).all()
    add_to_rollup(connection, rollup_counts(
        (iid, str(channel), str(event), at) for iid, channel, event, at in inserted))
    result.stored = bool(inserted)
    session.commit()
    if delivery_id is not None and callback.status in CONFIRMING:
        result.confirmed = confirm_by_key(session, callback.key,
                                          provider_id=callback.message_sid)
    if callback.error_code in OPTED_OUT_CODES and callback.to:
        result.opted_out = opt_out(session, callback.to, now=moment)
    return result


def opt_out(session: Session, phone: str, *, now: datetime | None = None) -> int:
    """The number replied STOP: no more SMS to any recipient with it; commits; how many
    recipients were opted out now (one already out keeps the time of its first STOP)."""
    done = session.execute(
        update(Recipient)
        .where(col(Recipient.phone) == phone, col(Recipient.sms_opted_out_at).is_(None))
        .values(sms_opted_out_at=now or utcnow())
        .returning(col(Recipient.id))).all()
    session.commit()
    return len(done)


def opt_in(session: Session, phone: str) -> int:
    """The number replied START: SMS may reach it again; commits; how many recipients."""
    done = session.execute(
        update(Recipient)
        .where(col(Recipient.phone) == phone, col(Recipient.sms_opted_out_at).is_not(None))
        .values(sms_opted_out_at=None)
        .returning(col(Recipient.id))).all()
    session.commit()
    return len(done)


HELP_TEMPLATE_DIR = "_sms"
"""``templates/_sms/help.<locale>.j2``: the answer to HELP, approved like any template."""


def recipient_locale(session: Session, phone: str) -> str | None:
    """The language of the (first) recipient with this number, None when nobody has it."""
    found = session.execute(select(col(Recipient.locale)).where(col(Recipient.phone) == phone)
                            .order_by(col(Recipient.id)).limit(1)).scalar()
    return str(found) if found else None


def help_reply(templates_dir: Path, *, locale: str, organization: str) -> str:
    """The answer to HELP in ``locale`` (else English) from its approved template; an
    ``ApprovalError`` when it is not approved as it is, a ``TemplateNotFound`` without one."""
    env = make_environment(templates_dir, approvals=ApprovalLock(templates_dir))
    lang = locale.replace("_", "-").split("-")[0].lower()
    chosen = lang if (templates_dir / HELP_TEMPLATE_DIR / f"help.{lang}.j2").is_file() else "en"
    template = env.get_template(f"{HELP_TEMPLATE_DIR}/help.{chosen}.j2")
    return template.render({"organization": organization, "locale": chosen}).strip()
