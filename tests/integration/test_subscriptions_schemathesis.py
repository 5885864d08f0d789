"""Schemathesis over the subscriptions app's own OpenAPI, served on loopback: generated
requests for every operation (subscribe, the confirm and unsubscribe pages and posts). Every
answer is one the OpenAPI documents, none is a server error, a refused request stores
nothing, and no queued job fails in the worker (those would be server errors nobody sees)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from repo_paths import PROJECT_ROOT
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.api.subscriptions import create_app
from crisiscomms.audience.models import Recipient
from crisiscomms.core.database import make_engine
from crisiscomms.core.settings import Settings
from crisiscomms.statuspage import model
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration
GENERATED = settings(max_examples=60, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))
OPERATIONS = [("POST", "/v1/subscribe"), ("GET", "/v1/confirm/{token}"),
              ("POST", "/v1/confirm/{token}"), ("GET", "/v1/unsubscribe/{token}"),
              ("POST", "/v1/unsubscribe/{token}")]


@dataclass
class Served:
    url: str
    engine: Engine
    app: Any

    def rows(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(Recipient)).one())

    def settle(self) -> None:
        assert self.app.state.subscribe_queue.join(timeout_s=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("subscriptions-schemathesis")
    with pytest.MonkeyPatch.context() as mp:
        port = free_port()
        for key, value in {"CRISISCOMMS_WORKSPACE": str(PROJECT_ROOT),
                           "CRISISCOMMS_DATA_DIR": str(root), "CRISISCOMMS_MODE": "drill",
                           "CRISISCOMMS_SUBSCRIPTIONS_URL": f"http://127.0.0.1:{port}",
                           "CRISISCOMMS_SUBSCRIBE_CLIENT_BURST": "1000000",
                           "CRISISCOMMS_SUBSCRIBE_MAILBOX_BURST": "1000000"}.items():
            mp.setenv(key, value)
        config = Settings(_env_file=None)  # type: ignore[call-arg]
        StatusPage(config.resolved_status_page_dir, page_name="Example Status",
                   page_url=config.status_page_url).change(
            lambda state: model.ensure_components(state, ["API", "Dashboard"],
                                                  "2026-11-23T09:00:00.000+00:00"))
        engine = make_engine(config.resolved_database_url)
        app = create_app(config)
        with serve_app(app, port, name="subscriptions-schemathesis") as url:
            yield Served(url, engine, app)
        app.state.subscribe_queue.stop()
        engine.dispose()


def operation(served: Served, method: str, path: str) -> Any:
    """The operation from the API's own OpenAPI, as the server publishes it (driven by
    hypothesis directly, as in test_intake_schemathesis)."""
    api = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    for result in api.get_all_operations():
        op = result.ok()
        if op.path == path and op.method.upper() == method:
            return op
    raise AssertionError(f"the OpenAPI has no {method} {path}")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests(served: Served, method: str, path: str,
                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="crisiscomms.api.work_queue")

    @GENERATED
    @given(case=operation(served, method, path).as_strategy())
    def check(case: Any) -> None:
        served.settle()
        before = served.rows()
        response = case.call(base_url=served.url)
        # every other check; a schema-valid body may still name an unknown component or an
        # address our parser refuses: a documented 400 naming the field, not a failure
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text
        assert "content-security-policy" in response.headers
        if not (method == "POST" and path == "/v1/subscribe" and response.status_code == 202):
            served.settle()
            assert served.rows() == before, (response.status_code, case.body)

    check()
    served.settle()
    assert not [r for r in caplog.records if "job failed" in r.getMessage()]


def test_the_openapi_documents_every_route(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json", timeout=10).json()
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert set(OPERATIONS) <= documented
    assert spec["paths"]["/v1/subscribe"]["post"]["responses"]["429"]["headers"]["Retry-After"]
