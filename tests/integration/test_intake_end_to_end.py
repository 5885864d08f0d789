"""Events in, end to end, as production runs it: ``prefect server start``, our deployments,
the warm ``crisiscomms worker``, ``crisiscomms api`` dispatching to Prefect, the emulators.

A signed Alertmanager alert (posted over HTTP, as Alertmanager posts it) becomes an incident
whose acknowledgement is published on the status page, X and email without a human; posting
it again starts nothing; the update (our own event naming the incident, with its cause) waits
in a paused flow run until two approvers approve from the CLI, then is published once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from approvers import cli_approver
from live_processes import Processes, wait_until
from repo_paths import PROJECT_ROOT
from test_handle_event_flow import RECIPIENTS, _is, _sent, intake_stack
from typer.testing import CliRunner

from crisiscomms.testing.emulators import EmulatorPair
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration
__all__ = ["intake_stack"]  # the fixture, imported for pytest

POOL = "crisiscomms-e2e-intake"
FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "intake"


def _runs_of(ref: str) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"incident:{ref}"])),
            sort=FlowRunSort.ID_DESC, offset=0, limit=20))


def test_a_signed_alert_acknowledges_and_the_update_waits_for_two_approvers(
    intake_stack: dict[str, Any], emulators: EmulatorPair
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.cli import app
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.flows.deploy import deploy
    from crisiscomms.intake.contract import SourceKind
    from crisiscomms.intake.signatures import sign_standard
    from crisiscomms.intake.sources import SourceStore
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import drill_recipients

    procs: Processes = intake_stack["procs"]
    env: dict[str, str] = intake_stack["env"]
    crisiscomms = str(Path(sys.executable).parent / "crisiscomms")
    with temporary_settings(updates={PREFECT_API_URL: intake_stack["api"]}):
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        deploy(POOL, source=intake_stack["ws"], rates={"email": 200.0, "x": 5.0})
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = SourceStore.from_settings(settings)
        token = store.add("prometheus", SourceKind.alertmanager)
        key = store.add("ops-tools", SourceKind.events)
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        with session_scope(engine) as session:
            insert_recipients(session, drill_recipients(RECIPIENTS))

        procs.start("worker", [crisiscomms, "worker", "--pool", POOL, "--limit", "4"], env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        procs.start("api", [crisiscomms, "api", "--port", str(port)], env)

        def api_up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the intake API", api_up, 120, procs, 0.5)

        # 1. Alertmanager posts a firing group: one incident, its acknowledgement goes out
        alert = (FIXTURES / "alertmanager_firing.json").read_bytes()
        bearer = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        posted = httpx.post(f"{url}/v1/events/alertmanager/prometheus", content=alert,
                            headers=bearer, timeout=30)
        assert posted.status_code == 202, posted.text
        events = posted.json()["events"]
        assert [e["outcome"] for e in events] == ["start", "grouped"]
        ref = events[0]["incident_ref"]

        def acknowledged() -> bool:
            sent = _sent(engine, ref, "acknowledge")
            return all(sent.get(c, 0) >= 1 for c in ("status_page", "x", "email", "support"))

        wait_until("the acknowledgement on every channel", acknowledged, 240, procs, 0.5)
        site = settings.resolved_status_page_dir / "site" / "api" / "v2" / "incidents.json"
        assert ref in site.read_text(encoding="utf-8")
        assert emulators.x.stats()["accepted_messages"] >= 1
        wait_until("the acknowledgement's run to end", lambda: all(
            r.state is not None and r.state.is_final() for r in _runs_of(ref)), 120, procs, 1)
        runs = _runs_of(ref)
        assert len(runs) == 1 and runs[0].state.is_completed(), procs.log("worker")
        before = (emulators.sendgrid.stats(), emulators.x.stats())
        assert before[0]["recipients"] == RECIPIENTS and before[0]["duplicates"] == 0

        # 2. posted again (Alertmanager re-sends every group_interval): nothing starts
        again = httpx.post(f"{url}/v1/events/alertmanager/prometheus", content=alert,
                           headers=bearer, timeout=30)
        assert again.status_code == 202
        assert {e["outcome"] for e in again.json()["events"]} == {"duplicate"}
        time.sleep(2)  # what a wrongly started run would need to show up
        assert len(_runs_of(ref)) == 1
        assert (emulators.sendgrid.stats(), emulators.x.stats()) == before

        # 3. the update: our incident tool posts the cause (in every locale of the playbook,
        # as the update's messages need); the flow run waits, paused
        drill = load_playbook("outage", settings.playbooks_dir).drill_facts
        translations = {loc: {"cause": words["cause"]}
                        for loc, words in drill["translations"].items() if "cause" in words}
        update = json.dumps({
            "playbook": "outage", "stage": "update", "incident_ref": ref,
            "dedup_key": f"{ref}-cause", "status": "firing",
            "occurred_at": "2026-12-01T07:30:00+00:00",
            "summary": "root cause found by the on-call engineer",
            "facts": {"cause": drill["cause"],
                      "next_update_at": "2026-12-01T08:30:00+00:00",
                      "translations": translations}}).encode()
        msg_id, stamp = "evt-update-1", int(time.time())
        signed = {"content-type": "application/json", "webhook-id": msg_id,
                  "webhook-timestamp": str(stamp),
                  "webhook-signature": sign_standard(key, msg_id, stamp, update)}
        answer = httpx.post(f"{url}/v1/events", content=update, headers=signed, timeout=30)
        assert answer.status_code == 202, answer.text
        assert answer.json()["events"][0]["outcome"] == "start"

        def update_run() -> str | None:
            found = [r for r in _runs_of(ref) if "stage:update" in (r.tags or [])]
            return str(found[0].id) if found else None

        wait_until("the update's flow run", lambda: update_run() is not None, 60, procs, 0.5)
        run_u = update_run()
        assert run_u is not None
        paused: Callable[[], bool] = _is(run_u, "paused")
        wait_until("the update to wait paused", paused, 240, procs, 0.5)
        assert _sent(engine, ref, "update") == {}

        runner = CliRunner()
        home: Path = intake_stack["home"]
        dana = cli_approver(home, "dana", "Dana (PR lead)")
        lee = cli_approver(home, "lee", "Lee (legal)")
        one = runner.invoke(app, ["approve", ref, "--stage", "update"], env=dana)
        assert one.exit_code == 0, one.output
        assert "first approval" in one.output
        time.sleep(2)
        assert paused() and _sent(engine, ref, "update") == {}

        two = runner.invoke(app, ["approve", ref, "--stage", "update"], env=lee)
        assert two.exit_code == 0, two.output
        assert f"flow run {run_u} resumed; it publishes" in " ".join(two.output.split())
        wait_until("the update's run to publish", _is(run_u, "final"), 180, procs, 0.5)
        assert _is(run_u, "completed")(), procs.log("worker")
        sent = _sent(engine, ref, "update")
        assert all(sent.get(c, 0) >= 1 for c in ("status_page", "x", "email", "support")), sent
        assert emulators.sendgrid.stats()["recipients"] == 2 * RECIPIENTS
        assert emulators.sendgrid.stats()["duplicates"] == 0
        assert emulators.x.stats()["duplicates"] == 0
        engine.dispose()
