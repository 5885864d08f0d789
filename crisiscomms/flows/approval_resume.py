"""The resume side of approvals that wait in a flow: after an approval that completes a
stage's bundle, resume the flow runs waiting for it (``flows/handle_event.py``) instead of
publishing here.

Used by ``crisiscomms approve`` and the dashboard's Approvals page. A first of two approvals
completes nothing and resumes nothing. When a run cannot be resumed (Prefect unreachable, the
run gone, failed or no longer paused) the caller publishes in-process as before: the ledger
keeps every send exactly once, so a run that wakes up later and publishes too sends nothing
twice. Importing this module imports no Prefect; resuming does.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from crisiscomms.core.database import session_scope
from crisiscomms.incident.flow_waits import end_waits, open_waits
from crisiscomms.incident.service import StageBundle

_USERINFO = re.compile(r"//[^/@\s]+@")


@dataclass(frozen=True)
class ResumeOutcome:
    """What resuming did: the runs resumed, and the runs that could not be (with why)."""

    resumed: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = field(default=())
    """(flow run id, reason without secrets) of each run that could not be resumed."""

    @property
    def publish_here(self) -> bool:
        """No run resumed: the caller publishes in-process (as without a waiting run)."""
        return not self.resumed

    def lines(self) -> list[str]:
        """What to tell the person who approved."""
        out = [f"flow run {run} resumed; it publishes" for run in self.resumed]
        out += [f"flow run {run} could not be resumed ({why}); publishing here instead"
                for run, why in self.failed]
        return out


def _reason(exc: Exception) -> str:
    text = _USERINFO.sub("//***@", " ".join(str(exc).split()))[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def prefect_api_configured() -> bool:
    """A Prefect server to talk to (``PREFECT_API_URL``); without one, resuming would start a
    temporary server in this process, which a dashboard must not own."""
    from prefect.settings import get_current_settings

    return bool(os.environ.get("PREFECT_API_URL") or get_current_settings().api.url)


def resume_waiting(engine: Engine, bundle: StageBundle, *, approved_by: str,
                   require_api: bool = False) -> ResumeOutcome:
    """Resume every run waiting for ``bundle``'s stage with the bundle hash, once its approval
    is complete (``bundle.approved``). ``require_api``: with no ``PREFECT_API_URL`` configured,
    resume nothing and report the runs as unreachable (the dashboard)."""
    if not bundle.approved:
        return ResumeOutcome()
    with session_scope(engine) as session:
        waits = [(w.flow_run_id, w.id) for w in open_waits(session, bundle.incident_id,
                                                            bundle.stage)]
    if not waits:
        return ResumeOutcome()
    resumed: list[str] = []
    failed: list[tuple[str, str]] = []
    if require_api and not prefect_api_configured():
        failed = [(run, "no Prefect server configured (PREFECT_API_URL)") for run, _ in waits]
    else:
        from prefect.flow_runs import resume_flow_run

        from crisiscomms.flows.handle_event import ApprovalInput

        run_input = ApprovalInput(bundle_hash=bundle.bundle_hash,
                                  approved_by=approved_by).model_dump()
        for run, _ in waits:
            try:
                resume_flow_run(uuid.UUID(run), run_input=run_input,  # type: ignore[call-arg]
                                _sync=True)
                resumed.append(run)
            except Exception as exc:  # unreachable, gone, not paused, timed out
                failed.append((run, _reason(exc)))
    if not resumed:  # the caller publishes; a run that wakes later finds it approved
        end_waits(engine, incident_id=bundle.incident_id, stage=bundle.stage,
                  how="published_in_process")
    return ResumeOutcome(tuple(resumed), tuple(failed))
