"""Incidents: init, trigger a playbook stage, approve it, list incidents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

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
) -> None:
    """Approve the exact rendered bundle of a stage, then publish it."""
    from crisiscomms.incident.service import approve

    settings = common.load_settings()
    me = common.identity(settings, by)
    engine = common.open_engine(settings)
    bundle = common.run_or_exit(lambda: approve(
        engine, incident_ref=incident, stage=stage, approver=me,
        playbooks_dir=settings.playbooks_dir, settings=settings))
    if bundle.approval is None:
        out.print(f"first approval of {incident} · {stage} recorded by {me}; the playbook "
                  "needs a second person (another identity): crisiscomms approve "
                  f"{incident} --stage {stage}", highlight=False, markup=False)
        return
    out.print(f"approved {incident} · {stage} by {bundle.approval.approver} "
              f"(bundle {bundle.bundle_hash[:12]})")
    if publish:
        common.print_publish(common.run_or_exit(lambda: common.publish(incident, stage)))


@app.command("incidents")
def incidents_cmd() -> None:
    """List incidents with per-channel delivery counts (every channel of the registry, in
    publication order: recipients sent/failed for personal channels, messages sent for the
    others)."""
    from crisiscomms.channels.registry import channel_classes
    from crisiscomms.incident.views import incident_overview

    settings = common.load_settings()
    engine = common.open_engine(settings)
    classes = channel_classes()
    table = Table("incident", "playbook", "status",
                  *(f"{name.replace('_', ' ')}{' sent/failed' if cls.personal else ''}"
                    for name, cls in classes.items()))
    for row in incident_overview(engine):
        cells = []
        for name, cls in classes.items():
            c = row.counts.get(name, {})
            cells.append(f"{c.get('sent', 0)}/{c.get('failed', 0)}" if cls.personal
                         else str(c.get("sent", 0)))
        table.add_row(row.ref, row.playbook, row.status, *cells)
    out.print(table)

