"""Schemathesis runs the intake API's own OpenAPI against it, served on loopback: generated
requests for every route, unsigned (as schemathesis makes them) and authenticated (a bearer
token, or our own Standard Webhooks signature over the generated body). Every answer is one the
OpenAPI documents, with its documented shape; none is a server error; and a refused request
stores nothing and starts nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from repo_paths import PROJECT_ROOT
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

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
PD_SECRET = "pd-subscription-secret-schemathesis-0123"


class Served:
    def __init__(self, url: str, engine: Engine, keys: dict[str, str]) -> None:
        self.url, self.engine, self.keys = url, engine, keys
        self.wakes = 0

    def events(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(IntakeEvent)).one())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("intake-schemathesis")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRISISCOMMS_WORKSPACE", str(PROJECT_ROOT))
        mp.setenv("CRISISCOMMS_DATA_DIR", str(root))
        mp.setenv("CRISISCOMMS_MODE", "drill")
        mp.setenv("CRISISCOMMS_INTAKE_RATE_PER_S", "100000")
        config = Settings(_env_file=None)  # type: ignore[call-arg]
        store = SourceStore.from_settings(config)
        keys = {"events": store.add("ops", SourceKind.events),
                "alertmanager": store.add("prom", SourceKind.alertmanager),
                "pagerduty": store.add("pd", SourceKind.pagerduty, secret=PD_SECRET),
                "grafana": store.add("graf", SourceKind.grafana),
                "recall": store.add("safety", SourceKind.recall)}
        engine = make_engine(config.resolved_database_url)
        box: list[Served] = []
        app = create_app(config, engine=engine,
                         on_stored=lambda: setattr(box[0], "wakes", box[0].wakes + 1))
        with serve_app(app, free_port(), name="intake-schemathesis") as url:
            box.append(Served(url, engine, keys))
            yield box[0]
        app.state.intake.writer.stop()


ROUTES = ["/v1/events", "/v1/events/alertmanager/{source}", "/v1/events/pagerduty/{source}",
          "/v1/events/grafana/{source}", "/v1/events/recall/{source}"]
GENERATED = settings(max_examples=40, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))


def operation(served: Served, path: str) -> Any:
    """The route's operation from the API's own OpenAPI, as the server publishes it.

    (``schemathesis.pytest`` parametrization does not run under pytest 9; the strategies and
    checks are the same, driven by hypothesis directly.)"""
    api = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    for result in api.get_all_operations():
        op = result.ok()
        if op.path == path and op.method.upper() == "POST":
            return op
    raise AssertionError(f"the OpenAPI has no POST {path}")


SOURCE_OF = {"alertmanager": "prom", "pagerduty": "pd", "grafana": "graf", "recall": "safety"}


def kind_of(path: str) -> str:
    parts = path.strip("/").split("/")
    return parts[2] if len(parts) > 2 else "events"


def authenticated(served: Served, kind: str, body: bytes) -> dict[str, str]:
    """The credentials the route's source expects, over exactly these bytes."""
    if kind in ("alertmanager", "grafana"):
        return {"Authorization": f"Bearer {served.keys[kind]}"}
    if kind == "pagerduty":
        return {"X-PagerDuty-Signature": sign_pagerduty(PD_SECRET, body)}
    msg_id, stamp = f"msg_{time.monotonic_ns()}", int(time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard(served.keys[kind], msg_id, stamp, body)}


@pytest.mark.parametrize("path", ROUTES)
def test_generated_requests_unsigned(served: Served, path: str) -> None:
    """As schemathesis makes them (random or missing credentials): documented answers only,
    never a 5xx, and nothing stored or started by a refusal."""

    @GENERATED
    @given(case=operation(served, path).as_strategy())
    def check(case: Any) -> None:
        before, wakes = served.events(), served.wakes
        response = case.call(base_url=served.url)
        case.validate_response(response)
        assert response.status_code < 500
        if response.status_code != 202:
            assert served.events() == before and served.wakes == wakes

    check()


@pytest.mark.parametrize("path", ROUTES)
def test_generated_bodies_authenticated(served: Served, path: str) -> None:
    """Generated bodies with valid credentials reach the parsers: 202, 400 or 422 with the
    documented shape (or 401 for a replayed delivery id), never a 5xx; a refused one stores
    nothing and starts nothing."""
    kind = kind_of(path)
    url = served.url + path.replace("{source}", SOURCE_OF.get(kind, "x"))

    @GENERATED
    @given(case=operation(served, path).as_strategy())
    def check(case: Any) -> None:
        body = json.dumps(case.body).encode() if case.body is not None else b""
        before, wakes = served.events(), served.wakes
        response = httpx.post(url, content=body, timeout=30, headers={
            "content-type": "application/json", **authenticated(served, kind, body)})
        answer = response.json()
        # 401 only as a replay: PagerDuty's delivery id is the body's event.id, and generated
        # bodies repeat one
        replay = response.status_code == 401 and answer.get("field") == "webhook-id"
        assert response.status_code in (202, 400, 422) or replay, \
            (response.status_code, response.text)
        if response.status_code == 202:
            assert set(answer) == {"source", "accepted", "events"}
        else:
            assert answer["message"] and answer["field"]
            assert served.events() == before and served.wakes == wakes

    check()
