"""Events that started nothing reach the PR lead: the failures page lists an event whose stage
failed to trigger (its reason, without credentials), one never dispatched, one dispatched and
never run; events that went well, or are still within their grace, are not listed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dashboard_apptest import open_page
from sqlalchemy.engine import Engine

from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import session_scope
from crisiscomms.identity.roles import Role
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.intake.stages import run_event_stage
from crisiscomms.intake.views import unstarted_events


def _event(engine: Engine, dedup: str, *, age_s: float, outcome: str = "start",
           flow_run_id: str | None = None, finished: bool = False,
           error: str | None = None, facts_json: str = "{}") -> int:
    received = utcnow() - timedelta(seconds=age_s)
    with session_scope(engine) as session:
        row = IntakeEvent(source="prom-eu", kind="alertmanager", dedup_key=dedup,
                          group_key=dedup, status="firing", outcome=outcome,
                          playbook="outage", stage="acknowledge", incident_ref=f"REF-{dedup}",
                          received_at=received, flow_run_id=flow_run_id,
                          dispatched_at=received if flow_run_id else None,
                          finished_at=received if finished else None, error=error,
                          facts_json=facts_json)
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


@pytest.fixture
def events(dashboard_db: Engine) -> dict[str, int]:
    engine = dashboard_db
    return {
        "ok": _event(engine, "ok", age_s=900, flow_run_id="run-ok", finished=True),
        "fresh": _event(engine, "fresh", age_s=5),  # the dispatcher has not had its turn yet
        "undispatched": _event(engine, "undispatched", age_s=120),
        "unrun": _event(engine, "unrun", age_s=900, flow_run_id="run-stuck"),
        "running": _event(engine, "running", age_s=30, flow_run_id="run-new"),
        "grouped": _event(engine, "grouped", age_s=900, outcome="grouped"),
    }


def test_the_events_that_started_nothing_are_listed_with_what_to_check(
        dashboard_db: Engine, events: dict[str, int]) -> None:
    # a real trigger failure: the playbook needs facts this event does not carry
    failing = _event(dashboard_db, "failing", age_s=60, flow_run_id="run-failing",
                     facts_json='{"incident_ref": "REF-failing", "note": '
                                '"see https://ops:s3cret@db.internal/x"}')
    from crisiscomms.channels.registry import channel_classes
    from crisiscomms.core.settings import Settings

    with pytest.raises(Exception):  # noqa: B017 - whatever the trigger raises is recorded
        run_event_stage(dashboard_db, Settings(), channel_classes(), failing)

    with session_scope(dashboard_db) as session:
        problems = unstarted_events(session, now=utcnow())
    by_id = {p.event_id: p for p in problems}
    assert set(by_id) == {failing, events["undispatched"], events["unrun"]}
    assert [p.event_id for p in problems] == sorted(by_id, reverse=True)  # newest first
    assert by_id[failing].problem == "failed" and by_id[failing].reason
    assert "s3cret" not in by_id[failing].reason
    assert by_id[events["undispatched"]].problem == "not dispatched"
    assert "crisiscomms api" in by_id[events["undispatched"]].reason
    assert by_id[events["unrun"]].problem == "not run"
    assert "run-stuck" in by_id[events["unrun"]].reason

    page = open_page("failures_page.py", Role.pr_lead).run()
    assert not page.exception
    assert any("Events that started nothing (3)" in h.value for h in page.subheader)
    shown = page.table[0].value
    assert sorted(shown["problem"]) == ["failed", "not dispatched", "not run"]
    assert list(shown["event"]) == [p.event_id for p in problems]


def test_nothing_is_shown_when_every_event_started_its_stage(dashboard_db: Engine) -> None:
    _event(dashboard_db, "ok", age_s=900, flow_run_id="run-ok", finished=True)
    page = open_page("failures_page.py", Role.pr_lead).run()
    assert not page.exception
    assert not any("started nothing" in h.value for h in page.subheader)
