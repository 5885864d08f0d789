"""Read models for the dashboard and CLI: engine functions, aggregates computed in SQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from crisiscomms.core.clock import as_utc
from crisiscomms.core.database import session_scope
from crisiscomms.delivery.ledger import ChannelCounts, FailureRow, counts_by_incident, failures
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import FactSheetVersion, Incident, IncidentStatus, Message


@dataclass(frozen=True)
class IncidentRow:
    id: int
    ref: str
    playbook: str
    title: str
    severity: str
    status: str
    drill: bool
    created_at: datetime
    counts: ChannelCounts


def incident_overview(engine: Engine, *, limit: int = 100) -> list[IncidentRow]:
    """Newest incidents first, each with recipients per channel and delivery state."""
    with session_scope(engine) as session:
        incidents = session.exec(
            select(Incident).order_by(col(Incident.created_at).desc()).limit(limit)
        ).all()
        counts = counts_by_incident(session)
        return [
            IncidentRow(i.id or 0, i.ref, i.playbook, i.title, i.severity, str(i.status), i.drill,
                        i.created_at, counts.get(i.id or 0, {}))
            for i in incidents
        ]


@dataclass(frozen=True)
class PreviousStatement:
    """The statement agents gave before the current one (same incident and locale)."""

    stage: str
    facts_version: int
    published_at: datetime
    changed_facts: tuple[str, ...]
    """Facts that differ between its fact sheet and the current one (``cause``,
    ``next_update_at``, ``extra.prevention``...), the statement's locale's translations
    included; empty when only the stage changed."""


@dataclass(frozen=True)
class HoldingStatement:
    """The words support agents give now for one incident and locale: the support channel's
    message of the latest stage whose bundle is approved (exactly this content) and whose
    support delivery was sent."""

    incident_id: int
    incident_ref: str
    title: str
    """The incident's title as this statement's fact sheet has it, in the statement's locale
    (not the incident row's, which an unapproved update may already have changed)."""
    locale: str
    stage: str
    stage_title: str | None
    stage_status: str | None
    """The incident status the stage announces (``identified``, ``resolved``...), from the
    playbook; None when the playbook cannot be read."""
    facts_version: int
    text: str
    published_at: datetime
    """When the support delivery was recorded sent (UTC)."""
    next_update_at: datetime | None
    """The fact sheet's promise (UTC-aware); None when it names none or the stage resolves
    the incident (no update is due then)."""
    time_zone: str
    """The fact sheet's time zone (the customers'), for showing times beside the reader's."""
    previous: PreviousStatement | None


def holding_statements(engine: Engine, incident_id: int, channel: str, *,
                       playbooks_dir: Path | None = None) -> dict[str, HoldingStatement]:
    """The current holding statement of an incident on ``channel`` (the support desk's), by
    locale: only **approved, published** words. A stage still awaiting approval, approved but
    not (yet, or successfully) published, or approved for other content never shows; the
    newest stage that is both (by render order) does, with the one before it. Nothing here
    comes from the incident row, which a triggered but unapproved stage already changed.
    ``playbooks_dir``: where to read the stages' titles and statuses and the playbook's
    locales (default locale first; else alphabetical)."""
    from crisiscomms.incident.service import bundle_approval

    with session_scope(engine) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return {}
        published = dict(session.execute(
            select(col(Delivery.message_id), func.max(col(Delivery.updated_at)))
            .join(Message, col(Message.id) == col(Delivery.message_id))
            .where(col(Message.incident_id) == incident_id, col(Message.channel) == channel,
                   col(Delivery.state) == DeliveryState.sent)
            .group_by(col(Delivery.message_id))).all())
        if not published:
            return {}
        messages = session.exec(
            select(Message).where(col(Message.id).in_(list(published)))
            .order_by(col(Message.id).desc())).all()
        approved: dict[tuple[str, int], bool] = {}
        chosen: dict[str, list[Message]] = {}
        for message in messages:
            bundle = (message.stage, message.facts_version)
            if bundle not in approved:
                approved[bundle] = bundle_approval(session, incident_id, *bundle) is not None
            if approved[bundle] and len(chosen.setdefault(message.locale, [])) < 2:
                chosen[message.locale].append(message)
        versions = {v.version: v for v in session.exec(
            select(FactSheetVersion).where(FactSheetVersion.incident_id == incident_id))}
        stages, locales = _playbook_outline(incident.playbook, playbooks_dir)
        order = {loc: i for i, loc in enumerate(locales)}
        out: dict[str, HoldingStatement] = {}
        for locale, (current, *before) in sorted(
                chosen.items(), key=lambda item: (order.get(item[0], len(order)), item[0])):
            facts = json.loads(versions[current.facts_version].facts_json)
            previous = None
            if before:
                prior = before[0]
                previous = PreviousStatement(
                    prior.stage, prior.facts_version, as_utc(published[prior.id]),
                    _changed_facts(json.loads(versions[prior.facts_version].facts_json),
                                   facts, locale))
            due = facts.get("next_update_at")
            stage_title, stage_status = stages.get(current.stage, (None, None))
            out[locale] = HoldingStatement(
                incident_id=incident_id, incident_ref=incident.ref,
                title=str(_flat_facts(facts, locale).get("title") or incident.title),
                locale=locale, stage=current.stage, stage_title=stage_title,
                stage_status=stage_status, facts_version=current.facts_version,
                text=json.loads(current.parts_json).get("text", ""),
                published_at=as_utc(published[current.id]),
                next_update_at=(None if not due or stage_status == IncidentStatus.resolved
                                else as_utc(datetime.fromisoformat(due))),
                time_zone=str(facts.get("time_zone") or "UTC"), previous=previous)
        return out


def _playbook_outline(playbook: str, playbooks_dir: Path | None
                      ) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    """Stage id → (title, incident status), and the locales with the default first, of a
    playbook; empty when it cannot be read. The playbook is parsed once per version of its
    file (``playbook_on_disk``): the support page asks once per incident on every run."""
    if playbooks_dir is None:
        return {}, ()
    from crisiscomms.core.errors import CrisisCommsError
    from crisiscomms.playbook.loader import playbook_on_disk

    try:
        book = playbook_on_disk(playbook, playbooks_dir)
    except CrisisCommsError:
        return {}, ()
    stages = {s.id: (s.title, str(s.incident_status)) for s in book.stages}
    return stages, (book.default_locale, *(loc for loc in book.locales
                                           if loc != book.default_locale))


def _flat_facts(facts: Mapping[str, Any], locale: str) -> dict[str, Any]:
    """A fact sheet as fact paths (``extra.x``, ``recall.hazard``), the locale's translations
    laid over the facts they translate."""
    flat: dict[str, Any] = {}
    for name, value in facts.items():
        if name == "translations":
            continue
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    flat.update((facts.get("translations") or {}).get(locale) or {})
    return flat


def _changed_facts(before: Mapping[str, Any], after: Mapping[str, Any],
                   locale: str) -> tuple[str, ...]:
    old, new = _flat_facts(before, locale), _flat_facts(after, locale)
    return tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))


def relative_time(when: datetime, now: datetime) -> str:
    """``in 25 min``, ``3 h 5 min ago``, ``now``: how far ``when`` is from ``now``."""
    minutes = round((when - now).total_seconds() / 60)
    if minutes == 0:
        return "now"
    hours, rest = divmod(abs(minutes), 60)
    days, hours = divmod(hours, 24)
    span = " ".join(f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (rest, "min"))
                    if n)
    return f"in {span}" if minutes > 0 else f"{span} ago"


def delivery_failures(engine: Engine, incident_ref: str | None = None, *,
                      limit: int = 500) -> list[FailureRow]:
    """Failed and unconfirmed deliveries with the provider's reason (the dashboard's failure
    list and ``crisiscomms failures``)."""
    from crisiscomms.incident.service import get_incident

    with session_scope(engine) as session:
        incident_id = get_incident(session, incident_ref).id if incident_ref else None
        return failures(session, incident_id, limit=limit)


def retry_failed(engine: Engine, incident_ref: str, *, channel: str | None = None,
                 include_unconfirmed: bool = False,
                 publish: Callable[[str], Mapping[str, Any]] | None = None,
                 ) -> tuple[int, Mapping[str, Any] | None]:
    """The one-click retry: put failed rows (and, after a human checked the provider,
    unconfirmed ones) back to planned under the same idempotency keys, then publish them with
    ``publish(incident_ref)`` when given (``crisiscomms.flows.run_playbook.run_resume``). Returns
    (recipients re-queued, publish result)."""
    from crisiscomms.delivery.ledger import requeue
    from crisiscomms.delivery.models import DeliveryState
    from crisiscomms.incident.service import audit, get_incident

    states = [DeliveryState.failed]
    if include_unconfirmed:
        states.append(DeliveryState.unconfirmed)
    with session_scope(engine) as session:
        incident = get_incident(session, incident_ref)
        assert incident.id is not None
        count = requeue(session, incident.id, channel=channel, states=states)
        audit(session, "retry", "deliveries.requeued", incident.id, channel=channel,
              recipients=count, unconfirmed=include_unconfirmed)
    return count, (publish(incident_ref) if publish is not None and count else None)
