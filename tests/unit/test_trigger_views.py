"""The stages the trigger form offers: exactly those the engine's lifecycle check lets through."""

from __future__ import annotations

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.incident.models import Incident, IncidentStatus
from crisiscomms.incident.trigger_views import next_stages
from crisiscomms.playbook.loader import Playbook, Stage, load_playbook


def outage() -> Playbook:
    return load_playbook("outage", PROJECT_ROOT / "playbooks")


def incident(status: IncidentStatus) -> Incident:
    return Incident(ref="OUT-1", playbook="outage", title="Down", severity="major",
                    status=status)


def ids(stages: list[Stage]) -> list[str]:
    return [s.id for s in stages]


def test_a_new_incident_may_start_with_any_open_stage_or_the_resolution() -> None:
    assert ids(next_stages(outage(), None)) == ["acknowledge", "update", "resolve"]


@pytest.mark.parametrize(("status", "offered"), [
    (IncidentStatus.investigating, ["acknowledge", "update", "resolve"]),
    (IncidentStatus.identified, ["acknowledge", "update", "resolve"]),
    (IncidentStatus.resolved, ["resolve"]),  # no reopen stage in the outage playbook
])
def test_an_open_incident_gets_the_stages_the_lifecycle_allows(status: IncidentStatus,
                                                               offered: list[str]) -> None:
    assert ids(next_stages(outage(), incident(status))) == offered


def test_a_reopen_stage_is_offered_once_resolved() -> None:
    pb = outage()
    reopen = pb.stages[0].model_copy(update={"id": "reopen", "title": "Back again"})
    playbook = pb.model_copy(update={"stages": (*pb.stages, reopen)})
    assert "reopen" in ids(next_stages(playbook, incident(IncidentStatus.resolved)))
    assert "acknowledge" not in ids(next_stages(playbook, incident(IncidentStatus.resolved)))
