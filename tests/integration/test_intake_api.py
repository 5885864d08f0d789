"""The intake API served by uvicorn on loopback, against a real SQLite database: what each
sender's signed request does, and every refusal (401, 400, 422, 413, 429) storing nothing and
starting nothing. The flows the accepted events start are tested in test_handle_event_flow.py
and test_intake_prefect.py; here the dispatcher's wake-up is counted."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from repo_paths import PROJECT_ROOT
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.api.intake import create_app
from crisiscomms.core.database import make_engine
from crisiscomms.core.settings import Settings
from crisiscomms.intake.contract import SourceKind
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.intake.signatures import sign_pagerduty, sign_standard
from crisiscomms.intake.sources import SourceStore
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "intake"
PD_SECRET = "pd-subscription-secret-0123456789abcdef"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Intake:
    url: str
    engine: Engine
    settings: Settings
    keys: dict[str, str]
    woken: list[float] = field(default_factory=list)

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None
             ) -> httpx.Response:
        return httpx.post(self.url + path, content=body, timeout=30,
                          headers={"content-type": "application/json", **(headers or {})})

    def signed(self, body: bytes, *, key: str | None = None, msg_id: str | None = None,
               at: float | None = None) -> dict[str, str]:
        msg_id = msg_id or f"msg_{time.monotonic_ns()}"
        stamp = int(at if at is not None else time.time())
        return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                "webhook-signature": sign_standard(key or self.keys["ops"], msg_id, stamp,
                                                   body)}

    def bearer(self, name: str = "prom") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def events(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(IntakeEvent)).one())

    def starts(self) -> list[IntakeEvent]:
        with Session(self.engine) as session:
            return list(session.exec(select(IntakeEvent).where(
                col(IntakeEvent.outcome).in_(["start", "propose"]))).all())


@pytest.fixture
def intake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    env = {"CRISISCOMMS_WORKSPACE": str(PROJECT_ROOT),
           "CRISISCOMMS_DATA_DIR": str(tmp_path / "data"), "CRISISCOMMS_MODE": "drill",
           "CRISISCOMMS_INTAKE_MAX_BODY_BYTES": "200000"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    settings.data_dir.mkdir(parents=True)
    store = SourceStore.from_settings(settings)
    keys = {"ops": store.add("ops", SourceKind.events),
            "prom": store.add("prom", SourceKind.alertmanager),
            "pd": store.add("pd", SourceKind.pagerduty, secret=PD_SECRET),
            "graf": store.add("graf", SourceKind.grafana),
            "safety": store.add("safety", SourceKind.recall),
            "slow": store.add("slow", SourceKind.alertmanager, rate_per_s=2.0)}
    engine = make_engine(settings.resolved_database_url)
    woken: list[float] = []
    app = create_app(settings, engine=engine, on_stored=lambda: woken.append(time.time()))
    with serve_app(app, free_port(), name="intake") as url:
        yield Intake(url, engine, settings, keys, woken)
    app.state.intake.writer.stop()


def test_an_alertmanager_storm_opens_one_incident_and_a_repost_starts_nothing(
        intake: Intake) -> None:
    body = fixture("alertmanager_firing.json")
    first = intake.post("/v1/events/alertmanager/prom", body, intake.bearer())
    assert first.status_code == 202, first.text
    outcomes = [e["outcome"] for e in first.json()["events"]]
    assert outcomes == ["start", "grouped"]  # two alerts of one group: one incident
    ref = first.json()["events"][0]["incident_ref"]
    assert ref.startswith("OUTAGE-") and len(intake.woken) == 1

    again = intake.post("/v1/events/alertmanager/prom", body, intake.bearer())
    assert again.status_code == 202
    assert {e["outcome"] for e in again.json()["events"]} == {"duplicate"}
    assert len(intake.starts()) == 1 and len(intake.woken) == 1  # nothing new to start

    # a storm: 40 more alerts of the same group, 20 requests at once
    doc = json.loads(body)

    def storm(i: int) -> httpx.Response:
        alerts = []
        for j in range(2):
            alert = dict(doc["alerts"][0], fingerprint=f"storm{i:03d}{j}",
                         labels={**doc["alerts"][0]["labels"], "instance": f"api-{i}-{j}"})
            alerts.append(alert)
        return intake.post("/v1/events/alertmanager/prom",
                           json.dumps({**doc, "alerts": alerts}).encode(), intake.bearer())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(storm, range(20)))
    assert {a.status_code for a in answers} == {202}
    assert {e["outcome"] for a in answers for e in a.json()["events"]} == {"grouped"}
    assert {e["incident_ref"] for a in answers for e in a.json()["events"]} == {ref}
    assert len(intake.starts()) == 1


def test_the_group_resolved_proposes_the_resolution_once(intake: Intake) -> None:
    intake.post("/v1/events/alertmanager/prom", fixture("alertmanager_firing.json"),
                intake.bearer())
    resolved = intake.post("/v1/events/alertmanager/prom", fixture("alertmanager_resolved.json"),
                           intake.bearer())
    assert resolved.status_code == 202, resolved.text
    proposals = [e for e in resolved.json()["events"] if e["outcome"] == "propose"]
    assert len(proposals) == 1 and proposals[0]["stage"] == "resolve"
    rows = [r for r in intake.starts() if r.outcome == "propose"]
    assert len(rows) == 1 and rows[0].proposal  # never auto-sent: it waits for a person


@pytest.mark.parametrize(("kind", "name", "path"), [
    ("pagerduty", "pagerduty_triggered.json", "/v1/events/pagerduty/pd"),
    ("grafana", "grafana_firing.json", "/v1/events/grafana/graf"),
    ("recall", "recall_feed.json", "/v1/events/recall/safety"),
    ("events", "event_outage.json", "/v1/events"),
])
def test_every_sender_signed_as_it_signs_starts_its_playbook(
        intake: Intake, kind: str, name: str, path: str) -> None:
    body = fixture(name)
    headers = {"pagerduty": {"X-PagerDuty-Signature": sign_pagerduty(PD_SECRET, body)},
               "grafana": intake.bearer("graf"),
               "recall": intake.signed(body, key=intake.keys["safety"]),
               "events": intake.signed(body)}[kind]
    answer = intake.post(path, body, headers)
    assert answer.status_code == 202, answer.text
    assert "start" in {e["outcome"] for e in answer.json()["events"]}
    assert len(intake.woken) == 1


def test_refusals_are_401_and_store_nothing(intake: Intake) -> None:
    body = fixture("event_outage.json")
    good = intake.signed(body)
    cases: list[tuple[str, dict[str, str], str]] = [
        ("unsigned", {}, "webhook-id"),
        ("badly signed", {**good, "webhook-signature": "v1,AAAA" + good[
            "webhook-signature"][7:]}, "webhook-signature"),
        ("another key", intake.signed(body, key=intake.keys["safety"]), "webhook-signature"),
        ("expired", intake.signed(body, at=time.time() - 3600), "webhook-timestamp"),
        ("from the future", intake.signed(body, at=time.time() + 3600), "webhook-timestamp"),
    ]
    for what, headers, field_name in cases:
        answer = intake.post("/v1/events", body, headers)
        assert answer.status_code == 401, what
        assert answer.json()["field"] == field_name, what
    changed = intake.post("/v1/events", body.replace(b"API", b"APX", 1), good)
    assert changed.status_code == 401
    assert intake.events() == 0

    for path, headers in [
        ("/v1/events/alertmanager/prom", {}),
        ("/v1/events/alertmanager/prom", {"Authorization": "Bearer wrong"}),
        ("/v1/events/alertmanager/nobody", intake.bearer()),
        ("/v1/events/alertmanager/graf", intake.bearer("graf")),  # a grafana source
        ("/v1/events/pagerduty/pd", {"X-PagerDuty-Signature": "v1=00"}),
    ]:
        answer = intake.post(path, fixture("alertmanager_firing.json"), headers)
        assert answer.status_code == 401, (path, answer.text)
        for key in intake.keys.values():
            assert key not in answer.text
    assert intake.events() == 0 and intake.woken == []

    # replayed: the same signed request twice; the second is refused and stores nothing
    assert intake.post("/v1/events", body, good).status_code == 202
    stored = intake.events()
    replay = intake.post("/v1/events", body, good)
    assert replay.status_code == 401 and replay.json()["field"] == "webhook-id"
    assert intake.events() == stored and len(intake.woken) == 1


def test_malformed_bodies_name_the_field_and_store_nothing(intake: Intake) -> None:
    not_json = b"{not json"
    answer = intake.post("/v1/events", not_json, intake.signed(not_json))
    assert (answer.status_code, answer.json()["field"]) == (400, "body")
    doc = json.loads(fixture("alertmanager_firing.json"))
    del doc["alerts"][0]["startsAt"]
    answer = intake.post("/v1/events/alertmanager/prom", json.dumps(doc).encode(),
                         intake.bearer())
    assert answer.status_code == 422
    assert answer.json()["field"] == "alerts[0].startsAt"
    doc = json.loads(fixture("alertmanager_firing.json")) | {"version": "3"}
    answer = intake.post("/v1/events/alertmanager/prom", json.dumps(doc).encode(),
                         intake.bearer())
    assert (answer.status_code, answer.json()["field"]) == (422, "version")
    assert intake.events() == 0 and intake.woken == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(intake: Intake) -> None:
    host, port = intake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # headers only, announcing 50 MB: the answer comes without a byte of body sent
        sock.sendall(b"POST /v1/events/alertmanager/prom HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 50000000\r\n"
                     b"Authorization: Bearer " + intake.keys["prom"].encode() + b"\r\n\r\n")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut at the cap while it streams
        yield b'{"version": "4", "alerts": ['
        for _ in range(400):
            yield b'{"status": "firing", "labels": {"a": "' + b"x" * 1000 + b'"}},'

    answer = httpx.post(intake.url + "/v1/events/alertmanager/prom", content=chunks(),
                        headers=intake.bearer(), timeout=30)
    assert answer.status_code == 413
    assert intake.events() == 0


def test_a_source_over_its_rate_gets_429_with_retry_after(intake: Intake) -> None:
    body = fixture("alertmanager_firing.json")
    headers = intake.bearer("slow")
    statuses = [intake.post("/v1/events/alertmanager/slow", body, headers) for _ in range(6)]
    limited = [a for a in statuses if a.status_code == 429]
    assert limited, [a.status_code for a in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["field"] == "source"
    # the other sources are not slowed by it
    assert intake.post("/v1/events/alertmanager/prom", body,
                       intake.bearer()).status_code == 202


def test_a_rotated_key_and_its_predecessor_both_verify(intake: Intake) -> None:
    store = SourceStore.from_settings(intake.settings)
    new = store.rotate("ops", grace_hours=1)
    body = fixture("event_outage.json")
    assert intake.post("/v1/events", body, intake.signed(body, key=new)).status_code == 202
    old = intake.signed(body, key=intake.keys["ops"])
    answer = intake.post("/v1/events", body, old)
    assert answer.status_code == 202
    assert {e["outcome"] for e in answer.json()["events"]} == {"duplicate"}


def test_openapi_describes_every_sender_with_an_example_and_its_refusals(
        intake: Intake) -> None:
    spec = httpx.get(intake.url + "/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) >= {"/v1/events", "/v1/events/alertmanager/{source}",
                          "/v1/events/pagerduty/{source}", "/v1/events/grafana/{source}",
                          "/v1/events/recall/{source}"}
    for path, item in paths.items():
        if not path.startswith("/v1/events"):
            continue
        post = item["post"]
        assert post["requestBody"]["content"]["application/json"]["example"], path
        assert {"202", "400", "401", "413", "422", "429"} <= set(post["responses"]), path
        assert any(p["in"] == "header" for p in post["parameters"]), path
    assert httpx.get(intake.url + "/docs").status_code == 200


def test_no_secret_in_any_log_line(intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    """Every record of a run with acceptances and refusals of every kind, at DEBUG, from
    every logger: none holds a key, a token or a signature."""
    caplog.set_level(logging.DEBUG)
    body = fixture("event_outage.json")
    signed = intake.signed(body)
    intake.post("/v1/events", body, signed)
    intake.post("/v1/events", body, signed)  # replay
    intake.post("/v1/events", body, intake.signed(body, key=intake.keys["safety"]))
    intake.post("/v1/events/alertmanager/prom", fixture("alertmanager_firing.json"),
                {"Authorization": f"Bearer {intake.keys['prom']}x"})
    intake.post("/v1/events/alertmanager/prom", fixture("alertmanager_firing.json"),
                intake.bearer())
    intake.post("/v1/events/pagerduty/pd", fixture("pagerduty_triggered.json"),
                {"X-PagerDuty-Signature": sign_pagerduty(PD_SECRET + "x", b"{}")})
    lines = [record.getMessage() for record in caplog.records]
    assert any("refused 401" in line for line in lines)
    secrets = [*intake.keys.values(), PD_SECRET, signed["webhook-signature"][3:]]
    for line in lines:
        for secret in secrets:
            assert secret not in line, line


def test_the_api_refuses_to_start_with_a_drill_key_in_production(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crisiscomms.core.errors import CrisisCommsError
    from crisiscomms.intake.sources import DRILL_SECRETS

    monkeypatch.setenv("CRISISCOMMS_WORKSPACE", str(PROJECT_ROOT))
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRISISCOMMS_MODE", "drill")
    drill = Settings(_env_file=None)  # type: ignore[call-arg]
    SourceStore.from_settings(drill).add("ops", SourceKind.events,
                                         secret=DRILL_SECRETS[SourceKind.events])
    monkeypatch.setenv("CRISISCOMMS_MODE", "production")
    production = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(CrisisCommsError, match="ops"):
        create_app(production)


def test_concurrent_first_alerts_of_one_group_open_one_incident(intake: Intake) -> None:
    body = fixture("alertmanager_firing.json")
    barrier = threading.Barrier(6)

    def post(i: int) -> Any:
        doc = json.loads(body)
        doc["alerts"] = [dict(doc["alerts"][0], fingerprint=f"race{i}")]
        barrier.wait()
        return intake.post("/v1/events/alertmanager/prom", json.dumps(doc).encode(),
                           intake.bearer()).json()

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(6)))
    assert sorted(e["outcome"] for a in answers for e in a["events"]) == \
        ["grouped"] * 5 + ["start"]
