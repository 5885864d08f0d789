"""``PrefectDispatcher`` on a real Prefect server: one flow run per event (Prefect's idempotency
key), a kept client, and a deployment deployed anew (a new id) found again without a restart."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

DEPLOYMENT = "handle-event/dispatcher-test"


def _deploy(client: Any) -> Any:
    flow_id = client.create_flow_from_name("handle-event")
    return client.create_deployment(flow_id=flow_id, name="dispatcher-test")


def test_runs_are_created_once_and_a_new_deployment_is_found(prefect_server: None) -> None:
    from prefect import get_client

    from crisiscomms.flows.dispatch import PrefectDispatcher

    dispatcher = PrefectDispatcher(DEPLOYMENT)
    with get_client(sync_client=True) as client:
        first_deployment = _deploy(client)
        first = dispatcher.start(9001, incident_ref="INC-D", stage="acknowledge")
        assert dispatcher.start(9001, incident_ref="INC-D", stage="acknowledge") == first
        run = client.read_flow_run(first)
        assert run.deployment_id == first_deployment
        assert run.parameters == {"event_id": 9001}
        assert run.state is not None and run.state.is_scheduled()
        assert {"intake", "incident:INC-D", "stage:acknowledge"} <= set(run.tags)

        client.delete_deployment(first_deployment)
        second_deployment = _deploy(client)
        assert second_deployment != first_deployment
        second = dispatcher.start(9002, incident_ref="INC-D", stage="update")
        assert client.read_flow_run(second).deployment_id == second_deployment
    dispatcher.close()


def _busy_front(api: str, busy: int) -> tuple[Any, list[int]]:
    """A front for the Prefect API that answers 503 (what a server whose SQLite database is
    locked answers) to the first ``busy`` flow-run creations and passes everything else on."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    answered: list[int] = []

    async def forward(request: Request) -> Response:
        path = request.url.path.removeprefix("/api")
        if path.endswith("/create_flow_run") and len(answered) < busy:
            answered.append(503)
            return Response('{"exception_message": "Service Unavailable"}', 503)
        async with httpx.AsyncClient(base_url=api) as client:
            upstream = await client.request(request.method, path, params=request.query_params,
                                            content=await request.body(),
                                            headers={"content-type": "application/json"})
        if path.endswith("/create_flow_run"):
            answered.append(upstream.status_code)
        return Response(upstream.content, upstream.status_code,
                        media_type=upstream.headers.get("content-type"))

    app = Starlette(routes=[Route("/api/{path:path}", forward,
                                  methods=["GET", "POST", "PATCH", "DELETE"])])
    return app, answered


def test_a_busy_server_is_asked_again_at_once_and_runs_once(prefect_server: None) -> None:
    """Prefect's client waits 2 s after a 503, then 4, 8... and gives up after 5 retries; the
    dispatcher asks again within milliseconds (six busy answers cost it 0.37 s), under the
    same idempotency key."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crisiscomms.flows.dispatch import PrefectDispatcher
    from crisiscomms.testing.asgi import serve_app
    from crisiscomms.testing.pgcluster import free_port

    with get_client(sync_client=True) as client:
        deployment = _deploy(client)
    app, answered = _busy_front(str(PREFECT_API_URL.value()), busy=6)
    port = free_port()
    with serve_app(app, port, name="busy-prefect") as front, \
            temporary_settings(updates={PREFECT_API_URL: f"{front}/api"}):
        dispatcher = PrefectDispatcher(DEPLOYMENT)
        run_id = dispatcher.start(9201, incident_ref="INC-B", stage="acknowledge")
        dispatcher.close()
    assert answered[:6] == [503] * 6 and answered[6] in (200, 201)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert run.deployment_id == deployment
        assert run.parameters == {"event_id": 9201}


def test_a_deployment_that_does_not_exist_fails_the_dispatch(prefect_server: None) -> None:
    from prefect.exceptions import ObjectNotFound

    from crisiscomms.flows.dispatch import PrefectDispatcher

    dispatcher = PrefectDispatcher("handle-event/never-deployed")
    with pytest.raises(ObjectNotFound):
        dispatcher.start(9101, incident_ref="INC-E", stage="acknowledge")
    with pytest.raises(ObjectNotFound):  # and again: the loop retries on its next pass
        dispatcher.start(9101, incident_ref="INC-E", stage="acknowledge")
