"""Incidents: init, trigger a playbook stage, approve it, list incidents, the holding
statements support gives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import Engine

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out


@app.command()
def init() -> None:
    """Create the data folder and database, and report the state of template approvals."""
    from crisiscomms.render.approvals import ApprovalLock

    settings = common.load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    common.open_engine(settings)
    lock = common.run_or_exit(lambda: ApprovalLock(settings.templates_dir))
    states = [lock.status(n).label for n in lock.template_names()]
    out.print(f"database ready: {settings.resolved_database_url.split('://')[0]} "
              f"({settings.data_dir})")
    out.print(f"templates: {states.count('final')} final, {states.count('provisional')} "
              f"provisional (drills only), {states.count('edited')} edited since approval, "
              f"{states.count('unapproved')} unapproved, {states.count('invalid')} invalid "
              f"(lock entry does not verify); mode: {settings.mode}")


@app.command("trigger")
def trigger_cmd(
    playbook: Annotated[str, typer.Argument(help="Playbook name, e.g. outage")],
    facts: Annotated[Path | None, typer.Option(help="YAML/JSON file of facts")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage id (default: the first)")] = None,
    incident: Annotated[str | None, typer.Option(help="Existing incident reference")] = None,
    by: Annotated[str | None, typer.Option(
        help="The name shown in the audit trail (display only: who triggers is your OS "
             "account or signing key)")] = None,
    publish: Annotated[bool, typer.Option(help="Publish at once when approved")] = True,
) -> None:
    """Trigger a playbook stage: build the fact sheet, render, and publish if auto-approved.

    In production mode (the default; CRISISCOMMS_MODE) every template of the stage needs a
    final approval, else nothing is stored or sent and each one is named; rehearse with
    crisiscomms drill."""
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.incident.service import trigger
    from crisiscomms.testing.drill import load_facts_file

    settings = common.load_settings()
    data: dict[str, Any] = common.run_or_exit(lambda: load_facts_file(facts)) if facts else {}
    if incident:
        data["incident_ref"] = incident
    me = common.identity(settings, by)
    engine = common.open_engine(settings)
    bundle = common.run_or_exit(lambda: trigger(
        engine, settings, CHANNEL_CLASSES, playbook_name=playbook, facts=data, stage=stage,
        actor=me))
    out.print(f"incident {bundle.incident_ref}: stage {bundle.stage} rendered "
              f"({len(bundle.message_ids)} messages, bundle {bundle.bundle_hash[:12]})")
    if not bundle.approved:
        out.print(f"awaiting approval: crisiscomms approve {bundle.incident_ref} "
                  f"--stage {bundle.stage}")
        return
    if publish:
        result = common.run_or_exit(lambda: common.publish(bundle.incident_ref, bundle.stage))
        common.print_publish(result)


@app.command("approve")
def approve_cmd(
    incident: Annotated[str, typer.Argument(help="Incident reference")],
    stage: Annotated[str, typer.Option(help="Stage id to approve")],
    by: Annotated[str | None, typer.Option(
        help="The name shown beside the approval (display only: the approver is your OS "
             "account or signing key)")] = None,
    publish: Annotated[bool, typer.Option(help="Publish at once after approval")] = True,
    bundle_hash: Annotated[str | None, typer.Option(
        "--bundle", metavar="HASH",
        help="The bundle hash you reviewed (12+ characters, as trigger printed it): refused "
             "when the stage's bundle is no longer that one")] = None,
) -> None:
    """Approve the exact rendered bundle of a stage, then publish it (or resume the flow run
    waiting for it, which publishes)."""
    from crisiscomms.incident.service import approve

    settings = common.load_settings()
    me = common.identity(settings, by)
    engine = common.open_engine(settings)
    bundle = common.run_or_exit(lambda: approve(
        engine, incident_ref=incident, stage=stage, approver=me,
        playbooks_dir=settings.playbooks_dir, settings=settings, seen_hash=bundle_hash))
    if bundle.approval is None:
        out.print(f"first approval of {incident} · {stage} recorded by {me}; the playbook "
                  "needs a second person (another identity): crisiscomms approve "
                  f"{incident} --stage {stage}", highlight=False, markup=False)
        return
    out.print(f"approved {incident} · {stage} by {bundle.approval.approver} "
              f"(bundle {bundle.bundle_hash[:12]})")
    if not publish:
        return
    # a flow run waiting for this approval (an event's flow, flows/handle_event.py) publishes
    # it once resumed; when none can be resumed, publish here as without one
    from crisiscomms.flows.approval_resume import resume_waiting

    resumed = resume_waiting(engine, bundle, approved_by=bundle.approval.approver)
    for line in resumed.lines():
        out.print(line, highlight=False, markup=False)
    if resumed.publish_here:
        common.print_publish(common.run_or_exit(lambda: common.publish(incident, stage)))


@app.command("incidents")
def incidents_cmd() -> None:
    """List incidents with per-channel delivery counts (every channel of the registry, in
    publication order: recipients sent/failed for addressed channels, messages sent for the
    others)."""
    from crisiscomms.channels.registry import channel_classes
    from crisiscomms.incident.views import incident_overview

    settings = common.load_settings()
    engine = common.open_engine(settings)
    classes = channel_classes()
    table = Table("incident", "playbook", "status",
                  *(f"{name.replace('_', ' ')}{' sent/failed' if cls.recipients else ''}"
                    for name, cls in classes.items()))
    for row in incident_overview(engine):
        cells = []
        for name, cls in classes.items():
            c = row.counts.get(name, {})
            cells.append(f"{c.get('sent', 0)}/{c.get('failed', 0)}" if cls.recipients
                         else str(c.get("sent", 0)))
        table.add_row(row.ref, row.playbook, row.status, *cells)
    out.print(table)



@app.command("statements")
def statements_cmd(
    incident: Annotated[str | None, typer.Argument(
        help="Incident reference (default: every open incident)")] = None,
    locale: Annotated[str | None, typer.Option(help="Only this locale (en, es, ...)")] = None,
) -> None:
    """The holding statements support gives now: only approved, published words, with the
    stage, when it was published and when the next update is due (times in this machine's
    zone)."""
    from datetime import datetime

    from crisiscomms.channels.support_desk import SupportDeskChannel
    from crisiscomms.core.clock import utcnow
    from crisiscomms.incident.views import holding_statements, incident_overview, relative_time

    settings = common.load_settings()
    engine = common.open_engine(settings)
    if incident:
        rows = [common.run_or_exit(lambda: _incident_key(engine, incident))]
    else:
        rows = [(r.id, r.ref) for r in incident_overview(engine) if r.status != "resolved"]
    now = utcnow()

    def when(at: datetime, *, due: bool = False) -> str:
        late = "overdue: " if due and at < now else ""
        return f"{at.astimezone():%Y-%m-%d %H:%M %Z} ({late}{relative_time(at, now)})"

    shown = 0
    for incident_id, ref in rows:
        statements = holding_statements(engine, incident_id, SupportDeskChannel.name,
                                        playbooks_dir=settings.playbooks_dir)
        if not statements:
            out.print(f"{ref}: no holding statement published yet", highlight=False)
        for loc, s in statements.items():
            if locale and loc != locale:
                continue
            shown += 1
            due = ("none: resolved" if s.stage_status == "resolved" else
                   when(s.next_update_at, due=True) if s.next_update_at else "not promised")
            out.print(f"── {s.incident_ref} · {loc} · stage {s.stage} · published "
                      f"{when(s.published_at)} · next update due {due}", highlight=False,
                      soft_wrap=True)
            if s.previous is not None:
                changed = ", ".join(s.previous.changed_facts) or "no facts (same fact sheet)"
                out.print(f"   since stage {s.previous.stage} "
                          f"({when(s.previous.published_at)}): changed {changed}",
                          highlight=False, soft_wrap=True)
            out.print(s.text, markup=False, highlight=False, soft_wrap=True)
    if rows and locale and not shown:
        out.print(f"no holding statement published in {locale}", highlight=False)


def _incident_key(engine: Engine, ref: str) -> tuple[int, str]:
    """(id, ref) of an incident; IncidentError naming an unknown one."""
    from crisiscomms.core.database import session_scope
    from crisiscomms.incident.service import get_incident

    with session_scope(engine) as session:
        found = get_incident(session, ref)
        assert found.id is not None
        return found.id, found.ref
