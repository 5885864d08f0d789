"""What the trigger form reads: the incidents a stage can still be posted to, the stages the
lifecycle allows next, and the fact sheet an update starts from.

Why its own module: the trigger page holds no SQL (house rule) and these reads belong to the
incident domain; the CLI refuses the same stages through ``service.check_stage_transition``,
which :func:`next_stages` calls, so the form never offers a stage the engine would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from crisiscomms.core.database import session_scope
from crisiscomms.incident.facts import FactSheet
from crisiscomms.incident.models import Incident
from crisiscomms.incident.service import (
    check_stage_transition,
    facts_of,
    get_incident,
    latest_facts,
)
from crisiscomms.playbook.loader import Playbook, Stage
from crisiscomms.statuspage.model import OPEN_STATUSES, LifecycleError, check_transition


@dataclass(frozen=True)
class OpenIncident:
    ref: str
    playbook: str
    title: str
    status: str
    drill: bool

    def label(self) -> str:
        drill = " · drill" if self.drill else ""
        return f"{self.ref} · {self.status}{drill} · {self.title}"


def next_stages(playbook: Playbook, incident: Incident | None) -> list[Stage]:
    """The stages of ``playbook`` the lifecycle allows next: for a new incident (None) those
    an incident may start with; for an existing one, those ``check_stage_transition`` lets
    through from its status (the update and the resolution are just stages)."""
    allowed = []
    for stage in playbook.stages:
        try:
            if incident is None:
                check_transition(None, str(stage.incident_status),
                                 reopen=stage.id.startswith("reopen"))
            else:
                check_stage_transition(incident, stage.id, str(stage.incident_status))
        except LifecycleError:
            continue
        allowed.append(stage)
    return allowed


def open_incidents(engine: Engine, playbook: Playbook, *, limit: int = 200) -> list[OpenIncident]:
    """The incidents of ``playbook`` that are open, or closed but able to take a stage that
    moves them on (a postmortem, a reopen), newest first. A resolved incident whose only
    allowed stage is the resolution again is not listed: it is over."""
    with session_scope(engine) as session:
        rows = session.exec(select(Incident).where(Incident.playbook == playbook.name)
                            .order_by(col(Incident.created_at).desc()).limit(limit)).all()
        return [OpenIncident(i.ref, i.playbook, i.title, str(i.status), i.drill)
                for i in rows if str(i.status) in OPEN_STATUSES
                or any(str(s.incident_status) != str(i.status) for s in next_stages(playbook, i))]


def incident_stages(engine: Engine, playbook: Playbook, ref: str) -> list[Stage]:
    """:func:`next_stages` of the incident ``ref`` (IncidentError when unknown)."""
    with session_scope(engine) as session:
        return next_stages(playbook, get_incident(session, ref))


def incident_facts(engine: Engine, ref: str) -> FactSheet:
    """The incident's latest fact sheet: what the form of its next stage is prefilled with."""
    with session_scope(engine) as session:
        incident = get_incident(session, ref)
        assert incident.id is not None
        return facts_of(latest_facts(session, incident.id))


def incident_channel_counts(engine: Engine, ref: str) -> dict[str, dict[str, int]]:
    """Recipients per channel and delivery state of the incident ``ref`` (after a publish:
    what each channel did)."""
    from crisiscomms.delivery.ledger import channel_counts

    with session_scope(engine) as session:
        incident = get_incident(session, ref)
        return {c: dict(states) for c, states in channel_counts(session, incident.id).items()}
