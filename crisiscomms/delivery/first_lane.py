"""Status page first, for real: the other lanes of a stage start only once its first lane
(the channels declaring ``Lane.first``: the status page, which every other message links to)
is published.

A stage (one incident, stage and fact sheet version) whose first-lane rows are not all ``sent``
holds every other row of that stage back: those rows stay ``planned``, so ``crisiscomms resume``
(or ``retry``) sends them once the page is up, exactly once, under their own keys. A stage
without a first-lane message is never held, nor a stage whose playbook says
``status_page_first: false``.

The flow (``flows/run_playbook.py``) asks :func:`hold_back` after its first lane and before
any other; resume first puts the failed first-lane rows of held stages back to ``planned``
(:func:`requeue_held_first`: the status page is idempotent by key), and the dashboard's retry
asks :func:`hold_back` before sending a channel's rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.delivery.contract import ChannelClasses, Lane
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import Incident, Message
from crisiscomms.playbook.loader import playbook_on_disk

_IN_CHUNK = 5000
"""Ids per ``IN (...)`` list (SQLite's bound-parameter limit)."""

Bundle = tuple[int, str, int]
"""(incident id, stage, fact sheet version): one published stage."""


@dataclass(frozen=True)
class HeldStage:
    """One stage whose other lanes were held back because its first lane is not published."""

    incident_ref: str
    stage: str
    facts_version: int
    channel: str
    """The first-lane channel that is not published."""
    failed: bool
    """True when its rows failed (else they are still planned, sending or unconfirmed)."""
    reason: str
    first_ids: tuple[int, ...]
    """The failed first-lane rows (what resume puts back to planned)."""
    held: Mapping[str, int] = field(default_factory=dict)
    """Channel → recipients held back (one per broadcast message)."""
    held_ids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Channel → the ledger rows held back (still planned)."""

    def line(self) -> str:
        """``status page failed for stage update: <reason>; nothing else was sent``."""
        what = "failed" if self.failed else "is not published"
        return (f"{self.channel.replace('_', ' ')} {what} for stage {self.stage}: "
                f"{self.reason}; nothing else was sent")

    def as_dict(self) -> dict[str, Any]:
        return {"incident_ref": self.incident_ref, "stage": self.stage,
                "facts_version": self.facts_version, "channel": self.channel,
                "failed": self.failed, "reason": self.reason, "held": dict(self.held),
                "line": self.line()}


def first_lane(channels: ChannelClasses) -> tuple[str, ...]:
    """The channels published, and awaited, before any other."""
    return tuple(name for name, cls in channels.items() if cls.lane is Lane.first)


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _IN_CHUNK):
        yield list(ids[i:i + _IN_CHUNK])


def _exempt(session: Session, incident_id: int, stage: str, playbooks_dir: Path,
            cache: dict[int, dict[str, bool]]) -> bool:
    """The playbook's explicit ``status_page_first: false`` for this stage; a playbook that
    cannot be read exempts nothing."""
    if incident_id not in cache:
        incident = session.get(Incident, incident_id)
        try:
            book = playbook_on_disk(incident.playbook, playbooks_dir) if incident else None
        except CrisisCommsError:
            book = None
        cache[incident_id] = {s.id: not s.status_page_first for s in book.stages} if book else {}
    return cache[incident_id].get(stage, False)


def hold_back(session: Session, planned: Mapping[str, Sequence[int]], channels: ChannelClasses,
              *, playbooks_dir: Path) -> tuple[dict[str, list[int]], list[HeldStage]]:
    """Split ``planned`` (channel → ledger row ids) into what may go now and the stages held
    back: a row outside the first lane goes only when its stage has no first-lane message, or
    all of that message's rows are ``sent``, or the stage opted out. First-lane rows always go.
    """
    first = first_lane(channels)
    others = [i for channel, ids in planned.items() if channel not in first for i in ids]
    if not first or not others:
        return {c: list(ids) for c, ids in planned.items()}, []
    row_bundle: dict[int, Bundle] = {}
    recipients: dict[int, tuple[str, int]] = {}
    for chunk in _chunks(others):
        for did, channel, count, incident_id, stage, version in session.execute(
                select(col(Delivery.id), col(Delivery.channel), col(Delivery.recipient_count),
                       col(Message.incident_id), col(Message.stage), col(Message.facts_version))
                .join(Message, col(Message.id) == col(Delivery.message_id))
                .where(col(Delivery.id).in_(chunk))).all():
            row_bundle[int(did)] = (int(incident_id), str(stage), int(version))
            recipients[int(did)] = (str(channel), int(count))
    exempt: dict[int, dict[str, bool]] = {}
    holds: dict[Bundle, HeldStage] = {}
    for bundle in sorted(set(row_bundle.values())):
        incident_id, stage, version = bundle
        if _exempt(session, incident_id, stage, playbooks_dir, exempt):
            continue
        hold = _first_lane_state(session, bundle, first)
        if hold is not None:
            holds[bundle] = hold
    if not holds:
        return {c: list(ids) for c, ids in planned.items()}, []
    held: dict[Bundle, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    held_ids: dict[Bundle, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    go: dict[str, list[int]] = {}
    for channel, ids in planned.items():
        keep = []
        for did in ids:
            bundle_of = row_bundle.get(did)
            if channel in first or bundle_of not in holds:
                keep.append(did)
                continue
            assert bundle_of is not None
            held[bundle_of][channel] += recipients[did][1]
            held_ids[bundle_of][channel].append(did)
        if keep:
            go[channel] = keep
    return go, [HeldStage(h.incident_ref, h.stage, h.facts_version, h.channel, h.failed,
                          h.reason, h.first_ids, dict(held[b]),
                          {c: tuple(ids) for c, ids in held_ids[b].items()})
                for b, h in holds.items()]


def _first_lane_state(session: Session, bundle: Bundle,
                      first: Sequence[str]) -> HeldStage | None:
    """None when the stage has no first-lane message or all its rows are sent; else why not."""
    incident_id, stage, version = bundle
    rows = session.execute(
        select(col(Delivery.id), col(Delivery.channel), col(Delivery.state),
               col(Delivery.error), col(Incident.ref))
        .join(Message, col(Message.id) == col(Delivery.message_id))
        .join(Incident, col(Incident.id) == col(Message.incident_id))
        .where(col(Message.incident_id) == incident_id, col(Message.stage) == stage,
               col(Message.facts_version) == version, col(Delivery.channel).in_(list(first)))
        .order_by(col(Delivery.id))).all()
    waiting = [r for r in rows if DeliveryState(r[2]) is not DeliveryState.sent]
    if not waiting:
        return None
    failed = [r for r in waiting if DeliveryState(r[2]) is DeliveryState.failed]
    errors = list(dict.fromkeys(str(r[3]) for r in failed if r[3]))
    states = Counter(DeliveryState(r[2]).value for r in waiting)
    summary = ", ".join(f"{n} of {len(rows)} updates {state}" for state, n in states.items())
    reason = "; ".join(errors) if errors and len(states) == 1 else \
        "; ".join([summary, *errors])
    return HeldStage(str(waiting[0][4]), stage, version, str(waiting[0][1]), bool(failed),
                     reason, tuple(int(r[0]) for r in failed))


def held_stages(session: Session, incident_id: int, channels: ChannelClasses, *,
                playbooks_dir: Path) -> list[HeldStage]:
    """The incident's stages whose other lanes are held back now (their rows planned)."""
    from crisiscomms.delivery.ledger import pending_by_channel

    return hold_back(session, pending_by_channel(session, incident_id), channels,
                     playbooks_dir=playbooks_dir)[1]


def requeue_held_first(session: Session, incident_id: int, channels: ChannelClasses, *,
                       playbooks_dir: Path) -> list[HeldStage]:
    """Put the failed first-lane rows of the incident's held stages back to ``planned`` (same
    keys: the status page adds an update once per key) so a resume publishes the page, then
    what waited behind it. Returns the stages concerned."""
    holds = [h for h in held_stages(session, incident_id, channels, playbooks_dir=playbooks_dir)
             if h.first_ids]
    ids = [i for h in holds for i in h.first_ids]
    for chunk in _chunks(ids):
        session.execute(update(Delivery)
                        .where(col(Delivery.id).in_(chunk),
                               col(Delivery.state) == DeliveryState.failed)
                        .values(state=DeliveryState.planned, error=None, updated_at=utcnow()))
    session.commit()
    return holds
