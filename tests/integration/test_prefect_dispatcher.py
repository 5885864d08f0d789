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


def test_a_deployment_that_does_not_exist_fails_the_dispatch(prefect_server: None) -> None:
    from prefect.exceptions import ObjectNotFound

    from crisiscomms.flows.dispatch import PrefectDispatcher

    dispatcher = PrefectDispatcher("handle-event/never-deployed")
    with pytest.raises(ObjectNotFound):
        dispatcher.start(9101, incident_ref="INC-E", stage="acknowledge")
    with pytest.raises(ObjectNotFound):  # and again: the loop retries on its next pass
        dispatcher.start(9101, incident_ref="INC-E", stage="acknowledge")
