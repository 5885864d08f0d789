"""Which deployments the warm worker runs in its own process (crisiscomms/flows/warm_routing.py),
and its infrastructure ids, which nothing may take for a pid."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from crisiscomms.flows import warm_routing
from crisiscomms.flows.warm_routing import FlowRef, flow_ref

RUN_PLAYBOOK = "crisiscomms.flows.run_playbook"


@pytest.mark.parametrize(("entrypoint", "expected"), [
    ("flows/run_playbook.py:publish_stage",
     FlowRef(RUN_PLAYBOOK, "publish_stage", "flows/run_playbook.py", thin=True)),
    ("./flows/run_playbook.py:resume_incident",
     FlowRef(RUN_PLAYBOOK, "resume_incident", "flows/run_playbook.py", thin=True)),
    ("flows/handle_event.py:handle_event",  # another part's flow, mapped before it lands
     FlowRef("crisiscomms.flows.handle_event", "handle_event", "flows/handle_event.py", True)),
    ("crisiscomms/flows/listen_x.py:listen_x",
     FlowRef("crisiscomms.flows.listen_x", "listen_x", "crisiscomms/flows/listen_x.py", False)),
    ("crisiscomms.flows.probe.worker_probe", FlowRef("crisiscomms.flows.probe", "worker_probe")),
])
def test_our_entrypoints_name_the_package_flow(entrypoint: str, expected: FlowRef) -> None:
    assert flow_ref(entrypoint) == expected


@pytest.mark.parametrize("entrypoint", [
    None, "", "my_flows.py:etl", "other/flows/run_playbook.py:publish_stage",
    "flows/sub/run_playbook.py:publish_stage", "flows/deploy.py:main",
    "flows/worker.py:WarmProcessWorker", "crisiscomms.flows.deploy.main",
    "crisiscomms.flows.run_playbook.sub.publish_stage", "crisiscomms.cli.app",
    "flows/run_playbook.txt:publish_stage", "flows/run_playbook.py:not-a-name",
    "mypackage.flows.run_playbook.publish_stage",
])
def test_anything_else_is_not_ours(entrypoint: str | None) -> None:
    assert flow_ref(entrypoint) is None


THIN = FlowRef(RUN_PLAYBOOK, "publish_stage", "flows/run_playbook.py", thin=True)


def test_the_shipped_thin_entrypoint_is_a_reexport() -> None:
    shipped = Path(__file__).resolve().parents[2] / "flows" / "run_playbook.py"
    assert warm_routing.reexports(shipped.read_text(), THIN)


@pytest.mark.parametrize(("source", "ok"), [
    (f"from {RUN_PLAYBOOK} import publish_stage\n", True),
    (f"from {RUN_PLAYBOOK} import publish_stage as publish_stage\n", True),
    (f"from {RUN_PLAYBOOK} import publish_stage as other\n", False),
    ("from prefect import flow\n\n@flow\ndef publish_stage(): ...\n", False),
    (f"from {RUN_PLAYBOOK} import publish_stage\n\ndef publish_stage(): ...\n", False),
    (f"from {RUN_PLAYBOOK} import publish_stage\npublish_stage = publish_stage.with_options()\n",
     False),
    ("from somewhere_else import publish_stage\n", False),
    ("def broken(:\n", False),
])
def test_an_edited_workspace_entrypoint_runs_the_stock_way(source: str, ok: bool) -> None:
    assert warm_routing.reexports(source, THIN) is ok


def test_only_a_working_directory_pull_step_is_understood() -> None:
    step = "prefect.deployments.steps.set_working_directory"
    assert warm_routing.working_directory(None) == (None, None)
    assert warm_routing.working_directory([]) == (None, None)
    assert warm_routing.working_directory([{step: {"directory": "/srv/ws"}}]) == (
        Path("/srv/ws"), None)
    directory, problem = warm_routing.working_directory(
        [{"prefect.deployments.steps.git_clone": {"repository": "https://x"}}])
    assert directory is None and problem is not None and "git_clone" in problem
    directory, problem = warm_routing.working_directory(
        [{step: {"directory": "{{ clone.directory }}"}}])
    assert directory is None and problem is not None


def test_env_differences_name_the_variables_never_their_values() -> None:
    own = {"CRISISCOMMS_DATABASE_URL": "sqlite:///a.db", "HOME": "/root"}
    run = {"CRISISCOMMS_DATABASE_URL": "postgresql://u:s3cret@db/x", "HOME": "/root",
           "PREFECT__FLOW_RUN_ID": "1234", "PREFECT_API_URL": "http://p/api",
           "UNSET_HERE": None}
    assert warm_routing.env_differences(run, own, {"PREFECT_API_URL": "http://p/api"}) == [
        "CRISISCOMMS_DATABASE_URL"]
    assert warm_routing.env_differences(run, own, {}) == [
        "CRISISCOMMS_DATABASE_URL", "PREFECT_API_URL"]
    assert "s3cret" not in " ".join(warm_routing.env_differences(run, own, {}))


def test_a_warm_infrastructure_id_is_never_a_pid() -> None:
    pytest.importorskip("prefect")
    from crisiscomms.flows.worker import warm_identifier, warm_run_id

    run = uuid.uuid4()
    ident = warm_identifier(run)
    assert not ident.isdigit() and warm_run_id(ident) == run
    for other in ("12345", "", None, "crisiscomms-warm:not-a-uuid", f"host:{run}"):
        assert warm_run_id(other) is None
