"""``intake.service.accept`` on real databases (SQLite and a throwaway PostgreSQL): replay
memory, dedup, an alert storm into one incident, the resolution proposed once its last alert
resolves, and two writers opening the same group at once.

Signals are built directly (the adapters are another part) and routed by the example
workspace's real playbook rules.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.database import make_engine
from crisiscomms.intake.contract import (
    AcceptResult,
    IntakeRequest,
    Outcome,
    Routed,
    Signal,
    SourceKind,
)
from crisiscomms.intake.models import IntakeEvent, IntakeGroup, SeenDelivery
from crisiscomms.intake.rules import route, workspace_playbooks
from crisiscomms.intake.service import accept

pytestmark = pytest.mark.integration

BOOKS = workspace_playbooks(PROJECT_ROOT / "playbooks")
NOW = datetime(2026, 12, 1, 7, 12, tzinfo=UTC)
WINDOW = 300
LABELS = {"alertname": "APIDown", "severity": "critical", "service": "api"}


def alert(n: int, *, group: str = "am-group-1", status: str = "firing",
          labels: dict[str, str] | None = None, **fields: Any) -> Signal:
    return Signal(source="am-prod", kind=fields.pop("kind", SourceKind.alertmanager),
                  dedup_key=f"fp-{n}@2026-12-01T07:05:00Z", group_key=group,
                  status=status,  # type: ignore[arg-type]
                  labels=labels or LABELS, started_at=NOW - timedelta(minutes=7),
                  ended_at=NOW if status == "resolved" else None, summary="api 5xx > 20%",
                  **fields)


def request(*signals: Signal, delivery_id: str | None = None,
            source: str = "am-prod") -> IntakeRequest:
    return IntakeRequest(source=source, delivery_id=delivery_id,
                         routed=[Routed(s, route(s, BOOKS, now=NOW)) for s in signals])


def outcomes(results: Sequence[AcceptResult]) -> list[str]:
    return [e.outcome.value for r in results for e in r.events]


def rows(engine: Engine, model: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.exec(select(model).order_by(col(model.id))))


def test_a_replayed_request_stores_nothing_and_the_others_are_unaffected(
        backend_engine: Engine) -> None:
    first = accept(backend_engine, [request(alert(1), delivery_id="msg_1")], now=NOW,
                   window_s=WINDOW)
    assert outcomes(first) == ["start"] and not first[0].replayed
    again = accept(backend_engine, [
        request(alert(1), delivery_id="msg_1"),                      # replayed
        request(alert(2), delivery_id="msg_2"),                      # new
        request(alert(3), delivery_id="msg_2"),                      # replayed within the batch
        request(alert(4), delivery_id="msg_1", source="grafana-1"),  # another source's id
        request(alert(5)),                                           # no id (bearer token)
    ], now=NOW + timedelta(seconds=10), window_s=WINDOW)
    assert [r.replayed for r in again] == [True, False, True, False, False]
    assert again[0].events == () and again[2].events == ()
    assert outcomes(again) == ["grouped", "grouped", "grouped"]
    assert len(rows(backend_engine, IntakeEvent)) == 4
    later = NOW + timedelta(seconds=10 + 2 * WINDOW + 1)  # past twice the window: forgotten
    after = accept(backend_engine, [request(alert(6), delivery_id="msg_1")], now=later,
                   window_s=WINDOW)
    assert not after[0].replayed
    assert {(s.source, s.delivery_id) for s in rows(backend_engine, SeenDelivery)} == {
        ("am-prod", "msg_1")}  # the others were pruned


def test_the_same_alert_twice_is_a_duplicate(backend_engine: Engine) -> None:
    results = accept(backend_engine, [request(alert(1), delivery_id="a"),
                                      request(alert(1), delivery_id="b")],
                     now=NOW, window_s=WINDOW)
    assert outcomes(results) == ["start", "duplicate"]
    later = accept(backend_engine, [request(alert(1), delivery_id="c")],
                   now=NOW + timedelta(hours=4), window_s=WINDOW)  # Alertmanager's repeat
    assert outcomes(later) == ["duplicate"]
    assert later[0].events[0].incident_ref == results[0].events[0].incident_ref
    starts = [e for e in rows(backend_engine, IntakeEvent) if e.outcome == Outcome.start]
    assert len(starts) == 1


def test_a_storm_of_500_alerts_over_50_batches_starts_one_incident_and_its_last_resolution_proposes(
        backend_engine: Engine) -> None:
    services = ["api", "dashboard"]
    counts: Counter[str] = Counter()
    for batch in range(50):
        reqs = [request(alert(n, labels={**LABELS, "service": services[n % 2]}),
                        delivery_id=f"storm-{n}") for n in range(batch * 10, batch * 10 + 10)]
        counts.update(outcomes(accept(backend_engine, reqs, now=NOW + timedelta(seconds=batch),
                                      window_s=WINDOW)))
    assert counts == {"start": 1, "grouped": 499}
    groups = rows(backend_engine, IntakeGroup)
    assert len(groups) == 1 and groups[0].resolved_at is None
    assert sorted(json.loads(groups[0].components_json)) == ["API", "Dashboard"]
    start = next(e for e in rows(backend_engine, IntakeEvent) if e.outcome == Outcome.start)
    facts = json.loads(start.facts_json)
    assert (start.playbook, start.stage, start.incident_ref, start.flow_run_id) == (
        "outage", "acknowledge", groups[0].incident_ref, None)
    assert facts["incident_ref"] == groups[0].incident_ref and facts["components"] == ["API"]
    assert "api 5xx" not in start.facts_json  # the alert's words stay internal

    resolved: Counter[str] = Counter()
    for batch in range(10):  # all but one alert resolve: nothing is proposed yet
        reqs = [request(alert(n, status="resolved"), delivery_id=f"res-{n}")
                for n in range(batch * 50, batch * 50 + 50) if n != 123]
        resolved.update(outcomes(accept(backend_engine, reqs, now=NOW + timedelta(minutes=30),
                                        window_s=WINDOW)))
    assert resolved == {"grouped": 499}
    last = accept(backend_engine, [request(alert(123, status="resolved"), delivery_id="res-123")],
                  now=NOW + timedelta(minutes=31), window_s=WINDOW)
    assert outcomes(last) == ["propose"]
    proposal = next(e for e in rows(backend_engine, IntakeEvent) if e.outcome == Outcome.propose)
    assert (proposal.stage, proposal.proposal, proposal.incident_ref) == (
        "resolve", True, groups[0].incident_ref)
    # a resolution says what is new (the PR lead may have edited the words since the start)
    assert json.loads(proposal.facts_json) == {
        "incident_ref": groups[0].incident_ref, "resolved_at": NOW.isoformat(),
        "components": ["API", "Dashboard"]}
    assert rows(backend_engine, IntakeGroup)[0].resolved_at is not None

    again = accept(backend_engine, [request(alert(123, status="resolved"), delivery_id="r2"),
                                    request(alert(999, status="resolved"), delivery_id="r3"),
                                    request(alert(1000), delivery_id="new")],
                   now=NOW + timedelta(hours=2), window_s=WINDOW)
    assert outcomes(again) == ["duplicate", "ignored", "start"]  # a new fire: a new incident
    assert again[0].events[0].incident_ref == groups[0].incident_ref
    assert again[2].events[0].incident_ref != groups[0].incident_ref


def test_a_group_resolving_and_firing_again_within_one_batch(backend_engine: Engine) -> None:
    results = accept(backend_engine, [request(alert(1)), request(alert(1, status="resolved")),
                                      request(alert(2))], now=NOW, window_s=WINDOW)
    assert outcomes(results) == ["start", "propose", "start"]
    refs = [r.events[0].incident_ref for r in results]
    assert refs[0] == refs[1] != refs[2]
    assert [g.resolved_at is None for g in rows(backend_engine, IntakeGroup)] == [False, True]


def test_a_pagerduty_incident_resolves_with_a_notice_of_another_dedup_key(
        backend_engine: Engine) -> None:
    def incident(event_type: str) -> Signal:
        return Signal(source="pd", kind=SourceKind.pagerduty, dedup_key=f"Q1ABC:{event_type}",
                      group_key="Q1ABC",
                      status="resolved" if event_type == "incident.resolved" else "firing",
                      labels={"service": "API Gateway", "urgency": "high", "priority": "P1"},
                      started_at=NOW, ended_at=NOW + timedelta(minutes=40))

    results = accept(backend_engine, [request(incident("incident.triggered"), source="pd")],
                     now=NOW, window_s=WINDOW)
    later = accept(backend_engine, [request(incident("incident.resolved"), source="pd")],
                   now=NOW + timedelta(minutes=40), window_s=WINDOW)
    assert outcomes(results) + outcomes(later) == ["start", "propose"]
    assert results[0].events[0].incident_ref == later[0].events[0].incident_ref


def test_no_rule_and_our_events(backend_engine: Engine) -> None:
    internal = alert(1, labels={"alertname": "DiskFull", "severity": "warning"})
    named = Signal(source="ops-tool", kind=SourceKind.events, dedup_key="evt-1",
                   group_key="evt-1", status="firing", labels={}, started_at=NOW,
                   playbook="outage", incident_ref="OUTAGE-2026-1201-A")
    results = accept(backend_engine, [request(internal), request(named, source="ops-tool")],
                     now=NOW, window_s=WINDOW)
    assert outcomes(results) == ["ignored", "start"]
    assert results[1].events[0].incident_ref == "OUTAGE-2026-1201-A"
    first = json.loads(rows(backend_engine, IntakeEvent)[1].facts_json)
    assert first["title"] == "Disruption to some of our services"  # a new incident: every fact
    update = Signal(source="ops-tool", kind=SourceKind.events, dedup_key="evt-2",
                    group_key="evt-2", status="firing", labels={}, started_at=NOW,
                    playbook="outage", stage="update", incident_ref="OUTAGE-2026-1201-A",
                    facts={"cause": "A configuration change to our load balancers."})
    results = accept(backend_engine, [request(update, source="ops-tool")], now=NOW,
                     window_s=WINDOW)
    assert [(e.outcome, e.incident_ref, e.stage) for e in results[0].events] == [
        (Outcome.start, "OUTAGE-2026-1201-A", "update")]
    stored = rows(backend_engine, IntakeEvent)[-1]
    assert json.loads(stored.facts_json) == {  # the update's news, not the rule's words again
        "incident_ref": "OUTAGE-2026-1201-A", "cause": "A configuration change to our load "
        "balancers.", "next_update_at": (NOW + timedelta(minutes=30)).isoformat()}
    ignored = rows(backend_engine, IntakeEvent)[0]
    assert (ignored.outcome, ignored.playbook, ignored.facts_json) == ("ignored", None, "{}")


def race(engines: list[Engine], group: str, first_key: int) -> list[list[AcceptResult]]:
    """Two writers accept the first 20 alerts each of ``group`` at the same moment."""
    barrier = threading.Barrier(len(engines))
    results: list[list[AcceptResult]] = [[] for _ in engines]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        reqs = [request(alert(first_key + 100 * i + n, group=group),
                        delivery_id=f"{group}-{i}-{n}") for n in range(20)]
        barrier.wait()
        try:
            results[i] = accept(engines[i], reqs, now=NOW, window_s=WINDOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_two_writers_opening_the_same_group_open_one_incident(db_url: str,
                                                              backend_engine: Engine) -> None:
    engines = [make_engine(db_url), make_engine(db_url)]  # two API processes' own pools
    rounds = 8
    try:
        for r in range(rounds):
            results = race(engines, f"race-{r}", 1000 * r)
            seen = Counter(outcomes(results[0]) + outcomes(results[1]))
            assert seen == {"start": 1, "grouped": 39}, r
            assert len({e.incident_ref for res in results for a in res for e in a.events}) == 1
        groups = rows(backend_engine, IntakeGroup)
        assert len(groups) == rounds and all(g.resolved_at is None for g in groups)
    finally:
        for engine in engines:
            engine.dispose()
