"""Store what verified requests brought, in one transaction per batch: replay memory, dedup,
alert-storm grouping and the outbox (``IntakeEvent`` rows a dispatcher starts).

The API hands :func:`accept` what concurrent requests brought, from one writer thread, so the
work is set-based: a few statements per batch (remember the delivery ids, look up the dedup keys
and the open groups, insert groups, events and alert states), never a few queries per signal.
The decisions in between are made in memory, in the order the signals came.

Two API processes may accept the same group's first alerts at once: the partial unique index
``ux_intakegroup_open`` lets one open the group; the other's insert conflicts and its alerts
join that group. On PostgreSQL the open groups a batch touches are locked (``FOR UPDATE``, in
id order) for the transaction, so a resolution never misses an alert another process is adding.
On SQLite the first statement (the replay memory's prune) takes the one write lock, so batches
of two processes run one after the other instead of failing on a stale snapshot.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import JSON, String, Text, any_, bindparam, cast, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from crisiscomms.core.database import session_scope
from crisiscomms.incident.models import Incident
from crisiscomms.intake.contract import (
    Accepted,
    AcceptResult,
    IntakeRequest,
    Outcome,
    Signal,
    StageRequest,
)
from crisiscomms.intake.models import IntakeEvent, IntakeGroup, IntakeGroupAlert, SeenDelivery

CHUNK = 500
"""Rows per multi-row statement (SQLite allows 32,766 bound values per statement)."""

STORED = (Outcome.start, Outcome.grouped, Outcome.propose)
"""Outcomes that count for dedup: the signal was taken (``ignored`` ones may match a rule
added later; ``duplicate`` ones repeat one of these)."""

T = TypeVar("T")

_events = IntakeEvent.__table__  # type: ignore[attr-defined]
_groups = IntakeGroup.__table__  # type: ignore[attr-defined]
_alerts = IntakeGroupAlert.__table__  # type: ignore[attr-defined]
_seen = SeenDelivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Decision:
    """What one signal does."""

    outcome: Outcome
    incident_ref: str | None
    stage: str | None
    fresh: bool = False
    """A new incident: its flow gets every fact the rule made. Otherwise (an update, a
    proposed resolution) only what is new: the times, the sender's own facts and, for a
    resolution, every component the group gathered; the rule's words would overwrite what
    the PR lead may have edited since."""
    components: tuple[str, ...] = ()


@dataclass
class _Group:
    """An open group as this batch sees it."""

    id: int | None
    playbook: str
    group_key: str
    incident_ref: str
    components: list[str]
    firing: set[str] | None = None
    """Its alerts still firing (None: not read yet; only a resolution needs them)."""
    changed_alerts: dict[str, bool] = field(default_factory=dict)
    closed: bool = False
    components_changed: bool = False
    mine: bool = False
    """Opened by this batch (its first firing signal starts the incident)."""
    started: bool = False


def accept(engine: Engine, requests: Sequence[IntakeRequest], *, now: datetime,
           window_s: int) -> list[AcceptResult]:
    """Store a batch of verified requests in one transaction; one result per request, in
    order. A request whose delivery id was seen within ``window_s`` is ``replayed`` and
    stores nothing (the others are unaffected); every other signal gets an ``IntakeEvent``
    with its outcome (``start``/``propose`` rows are the outbox)."""
    now = now.astimezone(UTC)
    with session_scope(engine) as session:
        conn = session.connection()
        _prune(conn, now, window_s)  # first: on SQLite it takes the write lock
        replayed = _remember(conn, requests, now, window_s)
        return _Batch(conn, now).run(requests, replayed)


def _prune(conn: Connection, now: datetime, window_s: int) -> None:
    """Forget delivery ids older than twice the window (their timestamps are refused anyway)."""
    conn.execute(delete(_seen).where(_seen.c.seen_at < now - timedelta(seconds=2 * window_s)))


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _among(conn: Connection, column: Any, values: Sequence[str]) -> Iterable[Any]:
    """``column`` is one of ``values``, as few conditions as the backend takes: PostgreSQL
    one ``= ANY(array)`` (hashed; one parameter), SQLite ``IN`` lists of ``CHUNK``."""
    if not values:
        return
    if conn.dialect.name == "postgresql":
        yield column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String)))
        return
    for chunk in _chunks(values):
        yield column.in_(chunk)


def _remember(conn: Connection, requests: Sequence[IntakeRequest], now: datetime,
              window_s: int) -> set[int]:
    """Record each request's delivery id; the indexes of the requests seen within the window
    (in the database, or earlier in this batch) are replays."""
    first: dict[tuple[str, str], int] = {}
    replayed: set[int] = set()
    for i, request in enumerate(requests):
        if request.delivery_id is None:
            continue
        key = (request.source, request.delivery_id)
        if key in first:
            replayed.add(i)
        else:
            first[key] = i
    if not first:
        return replayed
    cutoff = now - timedelta(seconds=window_s)

    def finish(ins: Any) -> Any:
        # a row older than the window is taken over (its request may come again, re-signed);
        # RETURNING names the rows inserted or taken over: the rest were seen within the window
        return ins.on_conflict_do_update(
            index_elements=[_seen.c.source, _seen.c.delivery_id],
            set_={"seen_at": ins.excluded.seen_at},
            where=_seen.c.seen_at < cutoff,
        ).returning(_seen.c.source, _seen.c.delivery_id)

    rows = [{"source": s, "delivery_id": d, "seen_at": now} for s, d in first]
    stored = {(r.source, r.delivery_id) for r in _bulk(conn, _seen, rows, finish)}
    replayed.update(i for key, i in first.items() if key not in stored)
    return replayed


NEWS = ("resolved_at", "next_update_at")
"""What a signal says anew about an incident that exists (besides its sender's own facts)."""


def _news(signal: Signal, stage: StageRequest, components: Sequence[str]) -> dict[str, Any]:
    """The facts of an update or a resolution of an incident that exists: the times, the
    facts the sender brought, and for a resolution every component its alerts named. The
    fact sheet keeps the rest (``trigger`` merges over the latest version)."""
    facts = {key: stage.facts[key] for key in NEWS if key in stage.facts}
    facts.update(signal.facts)
    if components:
        facts["components"] = list(components)
    return facts


def _plain(value: Any) -> Any:
    """A value as JSON carries it to PostgreSQL (times as ISO 8601 with their offset)."""
    return value.isoformat() if isinstance(value, datetime) else value


def _bulk(conn: Connection, table: Any, rows: list[dict[str, Any]],
          finish: Callable[[Any], Any]) -> list[Any]:
    """Insert ``rows`` into ``table`` through ``finish`` (which adds ON CONFLICT and RETURNING
    to the dialect's insert): on PostgreSQL in one ``INSERT ... SELECT`` with one parameter
    per column (a multi-row VALUES has one per value, which the driver parses on every call:
    most of a batch's time at a thousand rows); on SQLite as an executemany. Returns what
    RETURNING gave, if anything."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        columns = list(rows[0])
        # each column one JSON array, unpacked by json_array_elements_text in lockstep: the
        # driver sends a string as it is, where a text[] parameter is escaped character by
        # character in Python (seconds for a thousand rows of facts)
        unnested = select(*[cast(func.json_array_elements_text(cast(bindparam(
            f"v_{c}", json.dumps([_plain(r[c]) for r in rows]), type_=Text), JSON)),
            table.c[c].type) for c in columns])
        result = conn.execute(finish(postgresql.insert(table).from_select(columns, unnested)))
        return list(result) if result.returns_rows else []
    out: list[Any] = []
    stmt = finish(sqlite.insert(table))
    for chunk in _chunks(rows):
        result = conn.execute(stmt, list(chunk))
        if result.returns_rows:
            out += list(result)
    return out


def _new_ref(playbook: str, now: datetime) -> str:
    """A readable, unique-enough reference: ``OUTAGE-20261201-0712-3f9a2c``."""
    return f"{playbook.upper().replace('_', '-')}-{now:%Y%m%d-%H%M}-{secrets.token_hex(3)}"


class _Batch:
    """The decisions of one batch, made in memory in arrival order, written set-based."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn, self.now = conn, now
        self.groups: dict[tuple[str, str], _Group] = {}
        self.all_groups: list[_Group] = []
        self.taken: dict[tuple[str, str, str], str | None] = {}
        """(playbook, status, dedup key) → incident ref of signals already taken."""
        self.known_refs: set[str] = set()

    def run(self, requests: Sequence[IntakeRequest], replayed: set[int]) -> list[AcceptResult]:
        live = [(i, r) for i, r in enumerate(requests) if i not in replayed]
        routed = [(i, r, rt.signal, rt.request) for i, r in live for rt in r.routed]
        self._load(routed)
        rows: list[dict[str, Any]] = []
        decided: list[tuple[int, _Decision]] = []
        for i, request, signal, stage in routed:
            decision = self._decide(signal, stage)
            decided.append((i, decision))
            rows.append(self._row(request, signal, stage, decision))
        self._write_groups()
        ids = self._write_events(rows)
        events: dict[int, list[Accepted]] = {}
        for event_id, (i, d) in zip(ids, decided, strict=True):
            events.setdefault(i, []).append(Accepted(event_id, d.outcome, d.incident_ref,
                                                     d.stage))
        return [AcceptResult(replayed=True) if i in replayed else
                AcceptResult(replayed=False, events=tuple(events.get(i, ())))
                for i in range(len(requests))]

    # -- reading: a few queries per batch ------------------------------------------------------

    def _load(self, routed: list[tuple[int, IntakeRequest, Signal, StageRequest | None]]) -> None:
        dedup = sorted({s.dedup_key for _, _, s, rq in routed if rq is not None})
        stored = {o.value for o in STORED}
        for among in _among(self.conn, _events.c.dedup_key, dedup):
            # by dedup key only (its index; the outcome is filtered here): an outcome condition
            # lets PostgreSQL's planner pick the outcome index on a table grown since ANALYZE
            rows = self.conn.execute(
                select(_events.c.playbook, _events.c.status, _events.c.dedup_key,
                       _events.c.incident_ref, _events.c.outcome).where(among))
            for r in rows:
                if r.outcome in stored:
                    self.taken[(r.playbook, r.status, r.dedup_key)] = r.incident_ref
        keys = sorted({rq.group_key or s.group_key for _, _, s, rq in routed if rq is not None})
        found: list[Any] = []
        for among in _among(self.conn, _groups.c.group_key, keys):
            found += self.conn.execute(
                select(_groups).where(among,
                                      _groups.c.resolved_at.is_(None))
                .order_by(_groups.c.id).with_for_update()).all()
        for r in found:
            self._add(_Group(r.id, r.playbook, r.group_key, r.incident_ref,
                             json.loads(r.components_json)))
        named = sorted({s.incident_ref for _, _, s, rq in routed
                        if rq is not None and s.incident_ref})
        for among in _among(self.conn, col(Incident.ref), named):
            self.known_refs.update(self.conn.scalars(select(col(Incident.ref)).where(among)))
        for among in _among(self.conn, _groups.c.incident_ref, named):
            self.known_refs.update(self.conn.scalars(select(_groups.c.incident_ref).where(among)))
        wanted: dict[tuple[str, str], tuple[str | None, list[str]]] = {}
        for _, _, signal, stage in routed:
            if stage is None or signal.status != "firing":
                continue
            key = (stage.playbook, stage.group_key or signal.group_key)
            if (key in self.groups or key in wanted
                    or (stage.playbook, signal.status, signal.dedup_key) in self.taken
                    or signal.incident_ref in self.known_refs):
                continue
            wanted[key] = (signal.incident_ref, list(stage.facts.get("components", ())))
        self._open_all(wanted)

    def _add(self, group: _Group) -> None:
        self.groups[(group.playbook, group.group_key)] = group
        self.all_groups.append(group)

    def _firing(self, group: _Group) -> set[str]:
        if group.firing is None:
            group.firing = set() if group.id is None else set(self.conn.scalars(
                select(_alerts.c.alert_key).where(_alerts.c.group_id == group.id,
                                                  _alerts.c.firing.is_(True))))
            for key, firing in group.changed_alerts.items():
                (group.firing.add if firing else group.firing.discard)(key)
        return group.firing

    def _alert(self, group: _Group, key: str, firing: bool) -> None:
        group.changed_alerts[key] = firing
        if group.firing is not None:
            (group.firing.add if firing else group.firing.discard)(key)

    # -- deciding ---------------------------------------------------------------------------

    def _decide(self, signal: Signal, stage: StageRequest | None) -> _Decision:
        if stage is None:
            return _Decision(Outcome.ignored, None, None)
        taken_key = (stage.playbook, signal.status, signal.dedup_key)
        if taken_key in self.taken:
            return _Decision(Outcome.duplicate, self.taken[taken_key], stage.stage)
        decision = self._outcome(signal, stage)
        if decision.outcome in STORED:
            self.taken[taken_key] = decision.incident_ref
        return decision

    def _outcome(self, signal: Signal, stage: StageRequest) -> _Decision:
        key = (stage.playbook, stage.group_key or signal.group_key)
        group = self.groups.get(key)
        firing = signal.status == "firing"
        if group is not None and (group.closed or (group.mine and not group.started
                                                   and not firing)):
            group = None  # resolved, or opened for a later alert of this batch
        named = signal.incident_ref if signal.incident_ref in self.known_refs else None
        run = Outcome.start if firing else Outcome.propose
        if signal.stage is not None and (named or group is not None):
            # our event names a stage of an incident that exists: run it (an update)
            fresh = group is not None and group.mine and not group.started and named is None
            ref = named or (group.incident_ref if group else None)
            if group is not None:
                group.started = True  # a group this batch opened starts with this stage
                self._alert(group, signal.alert, firing)
                self._components(group, stage)
                if not firing and not self._firing(group):
                    self._close(group)
            return _Decision(run, ref, stage.stage, fresh=fresh)
        if named is not None and group is None:
            return _Decision(run, named, stage.stage)
        if firing:
            if group is None:
                group = self._open(key, signal.incident_ref)
            self._alert(group, signal.alert, True)
            self._components(group, stage)
            if group.mine and not group.started:
                group.started = True
                return _Decision(Outcome.start, group.incident_ref, stage.stage, fresh=True)
            return _Decision(Outcome.grouped, group.incident_ref, stage.stage)
        if group is None:
            return _Decision(Outcome.ignored, None, stage.stage)
        self._alert(group, signal.alert, False)
        if self._firing(group):
            return _Decision(Outcome.grouped, group.incident_ref, stage.stage)
        self._close(group)
        return _Decision(Outcome.propose, group.incident_ref, stage.stage,
                         components=tuple(group.components))

    def _close(self, group: _Group) -> None:
        """Resolve the group now (its key may open a new group later in this batch; on
        PostgreSQL this batch holds the group's lock, so nobody else closed it meanwhile)."""
        group.closed = True
        if group.id is not None:
            self.conn.execute(update(_groups).where(_groups.c.id == group.id)
                              .values(resolved_at=self.now))

    def _components(self, group: _Group, stage: StageRequest) -> None:
        for name in stage.facts.get("components", ()):
            if name not in group.components:
                group.components.append(name)
                group.components_changed = True

    def _open_all(self, wanted: dict[tuple[str, str], tuple[str | None, list[str]]]) -> None:
        """Open the groups this batch's first alerts need, in one statement (playbook, group
        key → the reference our event names, or None: a fresh one, and the first alert's
        components). A group another process opened meanwhile conflicts on
        ``ux_intakegroup_open``: this batch joins that one."""
        if not wanted:
            return
        refs = self._fresh_refs({key: named for key, (named, _) in wanted.items()})
        rows = [{"playbook": pb, "group_key": gk, "incident_ref": refs[(pb, gk)],
                 "opened_at": self.now, "components_json": json.dumps(components)}
                for (pb, gk), (_, components) in wanted.items()]
        opened: set[tuple[str, str]] = set()
        for r in _bulk(self.conn, _groups, rows, lambda ins: ins.on_conflict_do_nothing(
                index_elements=[_groups.c.playbook, _groups.c.group_key],
                index_where=_groups.c.resolved_at.is_(None),
        ).returning(_groups.c.id, _groups.c.playbook, _groups.c.group_key)):
            key = (r.playbook, r.group_key)
            opened.add(key)
            self._add(_Group(r.id, r.playbook, r.group_key, refs[key], list(wanted[key][1]),
                             firing=set(), mine=True))
        others = sorted({gk for pb, gk in wanted if (pb, gk) not in opened})
        for among in _among(self.conn, _groups.c.group_key, others):
            for r in self.conn.execute(
                    select(_groups).where(among,
                                          _groups.c.resolved_at.is_(None))
                    .order_by(_groups.c.id).with_for_update()):
                if (r.playbook, r.group_key) in wanted and (r.playbook, r.group_key) not in opened:
                    self._add(_Group(r.id, r.playbook, r.group_key, r.incident_ref,
                                     json.loads(r.components_json)))
        self.known_refs.update(g.incident_ref for g in self.all_groups)

    def _open(self, key: tuple[str, str], named: str | None) -> _Group:
        """A group reopened by a firing alert after this batch resolved it."""
        self._open_all({key: (named, [])})
        return self.groups[key]

    def _fresh_refs(self, wanted: dict[tuple[str, str], str | None]) -> dict[tuple[str, str], str]:
        """The named reference, else a new readable one no group holds yet."""
        refs = {key: named for key, named in wanted.items() if named is not None}
        pending = [key for key, named in wanted.items() if named is None]
        while pending:
            fresh = {key: _new_ref(key[0], self.now) for key in pending}
            clash: set[str] = set()
            for among in _among(self.conn, _groups.c.incident_ref, sorted(set(fresh.values()))):
                clash.update(self.conn.scalars(select(_groups.c.incident_ref).where(among)))
            used = set(refs.values()) | self.known_refs | clash
            pending = []
            for key, ref in fresh.items():
                if ref in used:
                    pending.append(key)
                else:
                    refs[key] = ref
                    used.add(ref)
        return refs

    # -- writing ------------------------------------------------------------------------------

    def _row(self, request: IntakeRequest, signal: Signal, stage: StageRequest | None,
             d: _Decision) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if stage is not None and d.outcome in (Outcome.start, Outcome.propose):
            facts = dict(stage.facts) if d.fresh else _news(signal, stage, d.components)
            if d.incident_ref is not None:
                facts["incident_ref"] = d.incident_ref
        return {
            "source": request.source[:64], "kind": signal.kind.value,
            "delivery_id": request.delivery_id, "dedup_key": signal.dedup_key[:256],
            "group_key": ((stage.group_key if stage else None) or signal.group_key)[:256],
            "status": signal.status, "summary": signal.summary, "outcome": d.outcome.value,
            "playbook": stage.playbook if stage else None, "stage": d.stage,
            "incident_ref": d.incident_ref,
            "facts_json": json.dumps(facts, default=str, sort_keys=True),
            "proposal": d.outcome is Outcome.propose, "received_at": self.now,
            "flow_run_id": None, "dispatched_at": None, "finished_at": None, "error": None,
        }

    def _write_groups(self) -> None:
        changed = [{"gid": g.id, "components": json.dumps(g.components)}
                   for g in self.all_groups if g.components_changed and g.id is not None]
        if changed:
            self.conn.execute(update(_groups).where(_groups.c.id == bindparam("gid"))
                              .values(components_json=bindparam("components")), changed)
        alerts = [{"group_id": g.id, "alert_key": k[:256], "firing": v, "updated_at": self.now}
                  for g in self.all_groups if g.id is not None
                  for k, v in g.changed_alerts.items()]
        _bulk(self.conn, _alerts, alerts, lambda ins: ins.on_conflict_do_update(
            index_elements=[_alerts.c.group_id, _alerts.c.alert_key],
            set_={"firing": ins.excluded.firing, "updated_at": ins.excluded.updated_at}))

    def _write_events(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert the events; their ids in order. On PostgreSQL the ids are taken from the
        sequence first (an ``INSERT ... SELECT`` does not promise RETURNING's order)."""
        if not rows:
            return []
        if self.conn.dialect.name == "postgresql":
            ids = list(self.conn.scalars(
                select(func.nextval(func.pg_get_serial_sequence(_events.name, "id")))
                .select_from(func.generate_series(1, len(rows)))))
            _bulk(self.conn, _events, [{"id": i, **r} for i, r in zip(ids, rows, strict=True)],
                  lambda ins: ins)
            return ids
        return [r.id for r in _bulk(self.conn, _events, rows, lambda ins: ins.returning(
            _events.c.id, sort_by_parameter_order=True))]

