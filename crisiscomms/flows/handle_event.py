"""The flow an accepted event runs (``handle-event``): trigger its stage, then publish it at once
when it is approved (``auto_send``), or wait in the flow run until people approve it.

Started by a dispatcher (``flows/dispatch.py``): a run of the ``handle-event/crisiscomms-intake``
deployment on a worker, or the same flow in a thread of the API process (embedded default).

**Waiting.** A stage that needs people pauses its flow run with Prefect's
``pause_flow_run(wait_for_input=ApprovalInput, timeout=approval_reminder_s)``: the dashboard
and ``crisiscomms approve`` resume it (``flows/approval_resume.py``) once the approval is
complete, naming the bundle hash. The run records its wait (``FlowWait``) before pausing so they
can find it.

**What a resume proves: nothing.** The database is the truth. On input the run checks that
the hash is the stage's current bundle *and* that our tables hold a complete approval of it
(``incident.service.load_bundle``: the approval of exactly that content); otherwise it logs why,
sends nothing and waits again. A forged ``resume_flow_run`` with the right hash publishes
nothing.

**When a wait times out (Prefect 3.8.8, read from ``prefect/flow_runs.py`` and the server's
``core_policy.py``/``services/pause_expirations.py``).** ``pause_flow_run`` proposes a
``Paused`` state whose ``pause_timeout`` is now + ``timeout``, then polls the run every
``poll_interval`` seconds; when ``timeout`` has passed it raises ``FlowPauseTimeout``, which
would fail the run. The server meanwhile refuses any resume after ``pause_timeout`` (the run is
set ``Failed``: "The flow was paused and never resumed") and its pause-expiration service fails
expired paused runs on its own; a second ``pause_flow_run`` from a run that is not ``Running``
is refused (the state stays as it is), and a pause key that already fired is refused as
"already fired". So on ``FlowPauseTimeout`` this flow reminds the PR lead, puts its own run back
to ``Running`` (``set_flow_run_state(force=True)``: the process never stopped) and pauses again
under a fresh key. Nothing is published on a timeout. A resume that lands in the moment between
the deadline and the forced ``Running`` is refused by the server; the approving face then
publishes in-process (the ledger keeps every send exactly once) and this run, finding the
stage approved in the database when it next looks, publishes nothing new.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from prefect import flow
from prefect.input import RunInput
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.engine import Engine

from crisiscomms.channels.alerts import AlertError, reminder_targets
from crisiscomms.channels.registry import channel_classes
from crisiscomms.core.database import session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.flows.run_playbook import _engine, publish_in_run
from crisiscomms.incident.approval_reminders import reminder_for
from crisiscomms.incident.flow_waits import end_waits, note_reminder, open_wait
from crisiscomms.incident.models import FlowWait
from crisiscomms.incident.service import StageBundle, get_incident, load_bundle
from crisiscomms.intake.stages import run_event_stage

TASK_THREADS = 32
"""The run's task-runner threads. The publishing code bounds itself (``max_workers`` fan-out
tasks at a time, one lane per other channel); this caps it should settings ask for more."""

PAUSE_POLL_S = 1
"""How often a paused run asks the server whether it was resumed (Prefect's default is 10 s:
an approval would wait that long to be published)."""


class ApprovalInput(RunInput):
    """What resumes a waiting run: the bundle hash the approvers approved, and who."""

    bundle_hash: str
    approved_by: str


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except Exception:  # outside a run (unit use of the helpers)
        return logging.getLogger(__name__)


def _flow_run_id() -> str:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("handle-event waits only inside a flow run")
    return str(context.flow_run.id)


def current_bundle(engine: Engine, incident_ref: str, stage: str) -> StageBundle:
    """The stage as it stands now (the newest fact sheet version), with its approval."""
    with session_scope(engine) as session:
        return load_bundle(session, get_incident(session, incident_ref), stage)


def remind(engine: Engine, settings: Settings, wait_id: int) -> list[str]:
    """Send the reminder of one wait to every configured target; the targets it reached.
    A target that fails is logged (no secret in the reason) and the others still go."""
    log = _log()
    with session_scope(engine) as session:
        wait = session.get(FlowWait, wait_id)
        assert wait is not None
        reminder = reminder_for(session, wait, playbooks_dir=settings.playbooks_dir,
                                dashboard_url=settings.dashboard_url)
    reached: list[str] = []
    for target in reminder_targets(settings):
        try:
            target.remind(reminder)
            reached.append(target.name)
        except AlertError as exc:
            log.warning("approval reminder not delivered: %s", exc)
    note_reminder(engine, wait_id)
    log.info("incident %s, stage %s: still waiting for approval (%s); reminded: %s",
             reminder.incident_ref, reminder.stage, reminder.subject,
             ", ".join(reached) or "nobody (no alert target configured)")
    return reached


class WaitCancelled(Exception):
    """The waiting run was cancelled (Prefect's UI or API): it stops waiting, sends nothing."""


def _back_to_running(flow_run_id: str) -> None:
    """After a pause timed out: the run is still ``Paused`` with an expired deadline (or
    ``Failed`` by the server's pause-expiration service); its process is alive and about to
    pause again, which the server allows only from ``Running``. A run someone cancelled
    meanwhile stays cancelled (:class:`WaitCancelled`)."""
    from prefect import get_client
    from prefect.states import Running

    run_id = uuid.UUID(flow_run_id)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        if state is not None and (state.is_cancelling() or state.is_cancelled()):
            raise WaitCancelled(f"flow run {flow_run_id} was cancelled while it waited")
        client.set_flow_run_state(run_id, Running(), force=True)


def wait_for_approval(engine: Engine, settings: Settings, bundle: StageBundle
                      ) -> tuple[StageBundle, int]:
    """Pause until the stage's current bundle is approved in our database; (that bundle, how
    many reminders were sent). Each timeout reminds and waits again; never sends."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    log = _log()
    run_id = _flow_run_id()
    timeout = max(1, round(settings.approval_reminder_s))
    reminders = 0
    waiting_hash: str | None = None
    while True:
        current = current_bundle(engine, bundle.incident_ref, bundle.stage)
        if current.approved:
            return current, reminders
        if waiting_hash is not None and waiting_hash != current.bundle_hash:
            end_waits(engine, incident_id=current.incident_id, stage=current.stage,
                      how="superseded", flow_run_id=run_id)
            log.info("incident %s, stage %s was rendered again (bundle %s); waiting for that",
                     current.incident_ref, current.stage, current.bundle_hash[:12])
        wait = open_wait(engine, incident_id=current.incident_id, stage=current.stage,
                         bundle_hash=current.bundle_hash, flow_run_id=run_id)
        waiting_hash = current.bundle_hash
        assert wait.id is not None
        try:
            got = pause_flow_run(wait_for_input=ApprovalInput, timeout=timeout,
                                 poll_interval=min(PAUSE_POLL_S, timeout),
                                 key=f"approval-{current.bundle_hash[:12]}-{uuid.uuid4().hex}")
        except FlowPauseTimeout:
            try:
                _back_to_running(run_id)
            except WaitCancelled:
                end_waits(engine, incident_id=current.incident_id, stage=current.stage,
                          how="cancelled", flow_run_id=run_id)
                raise
            if not current_bundle(engine, bundle.incident_ref, bundle.stage).approved:
                # approved meanwhile (a face published it itself): no reminder, publish below
                reminders += 1
                remind(engine, settings, wait.id)
            continue
        now = current_bundle(engine, bundle.incident_ref, bundle.stage)
        if got.bundle_hash != now.bundle_hash:
            log.warning("resumed by %s naming bundle %s, but the stage's bundle is %s: nothing "
                        "sent, waiting again", got.approved_by, got.bundle_hash[:12],
                        now.bundle_hash[:12])
        elif not now.approved:
            log.warning("resumed by %s for bundle %s without a complete approval in the "
                        "database: nothing sent, waiting again", got.approved_by,
                        got.bundle_hash[:12])


@flow(name="handle-event", log_prints=False,
      task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=TASK_THREADS)))
def handle_event(event_id: int, batches_deployment: str | None = None) -> dict[str, Any]:
    """Run the stage of ``IntakeEvent`` ``event_id``; publish it when approved (at once for an
    ``auto_send`` stage, after the wait otherwise), as tasks of this run
    (``run_playbook.publish_in_run``: plan, status page first, then the rest; no subflow, whose
    creation alone cost 0.4 s before an acknowledgement's first send). Handling the same event
    twice renders and plans nothing twice (``intake.stages.run_event_stage``; the ledger's
    keys)."""
    settings = Settings()
    engine = _engine(settings.resolved_database_url)
    bundle = run_event_stage(engine, settings, channel_classes(), event_id)
    reminders, waited = 0, not bundle.approved
    if waited:
        bundle, reminders = wait_for_approval(engine, settings, bundle)
    summary = publish_in_run(bundle.incident_ref, bundle.stage,
                             batches_deployment=batches_deployment)
    if waited:
        end_waits(engine, incident_id=bundle.incident_id, stage=bundle.stage, how="published",
                  flow_run_id=_flow_run_id())
    return {"event_id": event_id, "incident_ref": bundle.incident_ref, "stage": bundle.stage,
            "bundle_hash": bundle.bundle_hash, "waited": waited, "reminders": reminders,
            "published": summary}
