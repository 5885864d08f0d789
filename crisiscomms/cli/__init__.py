"""The ``crisiscomms`` command line (Typer).

Errors the engine raises on purpose are printed as one clear line on stderr with exit code 2;
nothing half-done is left behind because the engine checks before it writes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings

app = typer.Typer(help="Crisis communications: playbooks, approved templates, coordinated "
                       "publishing.", no_args_is_help=True, pretty_exceptions_enable=False)
templates_app = typer.Typer(help="Approve and inspect pre-approved templates.",
                            no_args_is_help=True)
app.add_typer(templates_app, name="templates")
maintenance_app = typer.Typer(help="Scheduled maintenance on the status page.",
                              no_args_is_help=True)
app.add_typer(maintenance_app, name="maintenance")
statuspage_app = typer.Typer(help="The public status page (static site).", no_args_is_help=True)
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(statuspage_app, name="statuspage")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except CrisisCommsError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        err.print(f"[bold red]configuration error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    return _run(Settings)


def _engine(settings: Settings) -> Engine:
    """The configured database, with its tables created if they are not there yet."""
    from crisiscomms.core.database import init_db, make_engine

    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    return engine


def _publish(incident_ref: str, stage: str) -> Mapping[str, Any]:
    import os

    # Prefect's own settings, before Prefect is first imported: no phoning home, quiet console.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from crisiscomms.flows.run_playbook import run_stage

    return run_stage(incident_ref, stage)


@app.command()
def init() -> None:
    """Create the data folder and database, and report the state of template approvals."""
    from crisiscomms.render.approvals import ApprovalLock

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _engine(settings)
    lock = ApprovalLock(settings.templates_dir)
    states = [lock.status(n).state for n in lock.template_names()]
    out.print(f"database ready: {settings.resolved_database_url.split('://')[0]} "
              f"({settings.data_dir})")
    out.print(f"templates: {states.count('approved')} approved, {states.count('edited')} edited "
              f"since approval, {states.count('unapproved')} unapproved")


@app.command("trigger")
def trigger_cmd(
    playbook: Annotated[str, typer.Argument(help="Playbook name, e.g. outage")],
    facts: Annotated[Path | None, typer.Option(help="YAML/JSON file of facts")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage id (default: the first)")] = None,
    incident: Annotated[str | None, typer.Option(help="Existing incident reference")] = None,
    by: Annotated[str | None, typer.Option(help="Who triggers (audit trail)")] = None,
    publish: Annotated[bool, typer.Option(help="Publish at once when approved")] = True,
) -> None:
    """Trigger a playbook stage: build the fact sheet, render, and publish if auto-approved."""
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.incident.service import trigger
    from crisiscomms.testing.drill import load_facts_file

    settings = _settings()
    data: dict[str, Any] = _run(lambda: load_facts_file(facts)) if facts else {}
    if incident:
        data["incident_ref"] = incident
    engine = _engine(settings)
    bundle = _run(lambda: trigger(engine, settings, CHANNEL_CLASSES, playbook_name=playbook,
                                  facts=data, stage=stage, actor=by or settings.operator))
    out.print(f"incident {bundle.incident_ref}: stage {bundle.stage} rendered "
              f"({len(bundle.message_ids)} messages, bundle {bundle.bundle_hash[:12]})")
    if not bundle.approved:
        out.print(f"awaiting approval: crisiscomms approve {bundle.incident_ref} "
                  f"--stage {bundle.stage} --by NAME")
        return
    if publish:
        _print_publish(_run(lambda: _publish(bundle.incident_ref, bundle.stage)))


def _print_publish(result: Mapping[str, Any]) -> None:
    table = Table("channel", "sent", "failed", "skipped", title=f"{result['incident_ref']} · "
                  f"{result['stage']}")
    for channel, c in result["channels"].items():
        table.add_row(channel, str(c["sent"]), str(c["failed"]), str(c["skipped"]))
    out.print(table)
    for line in result.get("errors", []):
        err.print(f"[red]failed:[/] {line}", highlight=False)
    if result.get("errors"):
        raise typer.Exit(1)


@app.command("approve")
def approve_cmd(
    incident: Annotated[str, typer.Argument(help="Incident reference")],
    stage: Annotated[str, typer.Option(help="Stage id to approve")],
    by: Annotated[str, typer.Option(help="Approver's name")],
    publish: Annotated[bool, typer.Option(help="Publish at once after approval")] = True,
) -> None:
    """Approve the exact rendered bundle of a stage, then publish it."""
    from crisiscomms.incident.service import approve

    settings = _settings()
    engine = _engine(settings)
    bundle = _run(lambda: approve(engine, incident_ref=incident, stage=stage, approver=by,
                                  playbooks_dir=settings.playbooks_dir))
    if bundle.approval is None:
        out.print(f"first approval of {incident} · {stage} recorded by {by}; the playbook needs "
                  f"a second person: crisiscomms approve {incident} --stage {stage} --by NAME")
        return
    out.print(f"approved {incident} · {stage} by {bundle.approval.approver} "
              f"(bundle {bundle.bundle_hash[:12]})")
    if publish:
        _print_publish(_run(lambda: _publish(incident, stage)))


@app.command("incidents")
def incidents_cmd() -> None:
    """List incidents with per-channel delivery counts."""
    from crisiscomms.incident.views import incident_overview

    settings = _settings()
    engine = _engine(settings)
    table = Table("incident", "playbook", "status", "email sent/failed", "x", "status page")
    for row in incident_overview(engine):
        c = row.counts
        table.add_row(row.ref, row.playbook, row.status,
                      f"{c.get('email', {}).get('sent', 0)}/{c.get('email', {}).get('failed', 0)}",
                      str(c.get("x", {}).get("sent", 0)),
                      str(c.get("status_page", {}).get("sent", 0)))
    out.print(table)


@app.command()
def drill(
    playbook: Annotated[str, typer.Argument(help="Playbook to rehearse")],
    recipients: Annotated[int, typer.Option(min=0, help="Synthetic subscribers")] = 100,
    facts: Annotated[Path | None, typer.Option(help="Facts overriding the drill facts")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Keep status page + sent.jsonl")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Run a playbook end to end against the emulators in a temporary workspace."""
    from crisiscomms.testing.drill import dumps, run_drill

    settings = _settings()
    report = _run(lambda: run_drill(playbook_name=playbook, recipients=recipients,
                                    publish=_publish, base=settings, facts_file=facts,
                                    out=out_dir))
    if as_json:
        sys.stdout.write(dumps(report) + "\n")
    else:
        _print_drill(report)
    failed = sum(c["failed"] for c in report["channels"].values())
    if failed or report["duplicates"]:
        raise typer.Exit(1)


def _print_drill(report: Mapping[str, Any]) -> None:
    table = Table("channel", "planned", "sent", "failed",
                  title=f"drill {report['incident_id']} ({report['playbook']})")
    for channel, c in report["channels"].items():
        table.add_row(channel, str(c["planned"]), str(c["sent"]), str(c["failed"]))
    out.print(table)
    out.print(f"emulators received: {report['emulator_received']}; duplicates: "
              f"{report['duplicates']}; {report['elapsed_s']} s")
    if "out" in report:
        out.print(f"outputs kept in {report['out']}")


@app.command()
def emulators(
    sendgrid_port: Annotated[int, typer.Option(help="SendGrid emulator port")] = 8025,
    x_port: Annotated[int, typer.Option(help="X emulator port")] = 8026,
) -> None:
    """Start the SendGrid and X emulators on loopback until interrupted."""
    import secrets

    from crisiscomms.testing.drill import emulator_environment
    from crisiscomms.testing.emulators import start_emulators

    sg_key, x_token = f"SG.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(24)
    pair = start_emulators(sendgrid_key=sg_key, x_token=x_token, sendgrid_port=sendgrid_port,
                           x_port=x_port)
    out.print(f"SendGrid emulator: {pair.sendgrid.url}/v3/mail/send")
    out.print(f"X emulator:        {pair.x.url}/2/tweets")
    env_file = Settings().data_dir / "emulators.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in
                                emulator_environment(pair, sg_key, x_token).items()))
    env_file.chmod(0o600)
    out.print(f"credentials for these emulators written to {env_file} (mode 600); "
              f"load them with: set -a; . {env_file}; set +a")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pair.stop()


recipients_app = typer.Typer(help="Recipients: import and validate.", no_args_is_help=True)
app.add_typer(recipients_app, name="recipients")


def _run_resume(incident_ref: str, stale_after_s: float | None) -> Mapping[str, Any]:
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from crisiscomms.flows.run_playbook import run_resume

    return run_resume(incident_ref, stale_after_s=stale_after_s)


def _print_reconciled(result: Mapping[str, Any]) -> None:
    r = result.get("reconciled") or {}
    out.print(f"reconciled rows left sending: {r.get('confirmed', 0)} confirmed by the provider "
              f"(not resent), {r.get('requeued', 0)} re-queued, {r.get('unconfirmed', 0)} "
              f"unconfirmed (check, then retry --unconfirmed), {r.get('still_sending', 0)} "
              "provider not reachable (run resume again)")
    for line in r.get("errors", []):
        err.print(f"[yellow]reconcile:[/] {line}", highlight=False)


@app.command("resume")
def resume_cmd(
    incident: Annotated[str, typer.Argument(help="Incident reference")],
    now: Annotated[bool, typer.Option(
        "--now", help="The sender is known to be dead: reconcile every sending row at once "
                      "(default: only rows older than the sending lease)")] = False,
    stale_after: Annotated[float | None, typer.Option(
        help="Seconds a row must have been sending to be reconciled")] = None,
) -> None:
    """After a crash: reconcile rows left sending against the providers, then send the rest."""
    lease = 0.0 if now else stale_after
    result = _run(lambda: _run_resume(incident, lease))
    _print_reconciled(result)
    _print_publish({**result, "stage": "resume"})


@app.command("retry")
def retry_cmd(
    incident: Annotated[str, typer.Argument(help="Incident reference")],
    channel: Annotated[str | None, typer.Option(help="Only this channel (email, x, ...)")]
    = None,
    unconfirmed: Annotated[bool, typer.Option(
        help="Also re-send unconfirmed rows (after checking the provider does not have them)")]
    = False,
) -> None:
    """Re-queue failed deliveries under the same idempotency keys and send them again."""
    from crisiscomms.incident.views import retry_failed

    engine = _engine(_settings())
    count, result = _run(lambda: retry_failed(
        engine, incident, channel=channel, include_unconfirmed=unconfirmed,
        publish=lambda ref: _run_resume(ref, None)))
    out.print(f"re-queued {count} recipient(s) of {incident}"
              + (f" on {channel}" if channel else ""))
    if result is not None:
        _print_publish({**result, "stage": "retry"})


@app.command("failures")
def failures_cmd(
    incident: Annotated[str | None, typer.Argument(help="Incident reference (default: all)")]
    = None,
) -> None:
    """Failed and unconfirmed deliveries with the provider's reason."""
    from crisiscomms.incident.views import delivery_failures

    engine = _engine(_settings())
    rows = _run(lambda: delivery_failures(engine, incident))
    table = Table(title="delivery failures")
    for name in ("incident", "channel", "locale", "batch", "recipients", "state", "attempts",
                 "reason"):  # fold, never cut: a reference or a reason must read whole
        table.add_column(name, overflow="fold")
    for f in rows:
        table.add_row(f.incident_ref, f.channel, f.locale, str(f.batch_no), str(f.recipients),
                      f.state, str(f.attempts), f.reason)
    out.print(table)
    if rows:
        out.print("retry: crisiscomms retry INCIDENT [--channel C] [--unconfirmed]")


@recipients_app.command("import")
def recipients_import_cmd(
    file: Annotated[Path, typer.Argument(help="CSV with a header row and an email column")],
    skip_invalid: Annotated[bool, typer.Option(
        help="Import the valid lines and report the rest (default: import nothing if any line "
             "is rejected)")] = False,
) -> None:
    """Import recipients from CSV, validating every address; rejects are reported by line."""
    from crisiscomms.audience.importer import import_csv
    from crisiscomms.core.database import init_db, make_engine

    engine = make_engine(_settings().resolved_database_url)
    init_db(engine)
    report = _run(lambda: import_csv(engine, file, skip_invalid=skip_invalid))
    for line, reason in report.rejected[:200]:
        err.print(f"line {line}: {reason}", highlight=False, soft_wrap=True)
    if len(report.rejected) > 200:
        err.print(f"... and {len(report.rejected) - 200} more rejected lines")
    if not report.written:
        err.print(f"[bold red]nothing imported:[/] {len(report.rejected)} of {report.lines} "
                  "line(s) rejected (fix them, or --skip-invalid)")
        raise typer.Exit(2)
    out.print(f"imported {report.imported} recipient(s) ({report.suppressed} unsubscribed or "
              f"suppressed: kept, never sent to); rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)


@templates_app.command("status")
def templates_status() -> None:
    """Show every template and whether it is approved, edited since approval, or unapproved."""
    from crisiscomms.render.approvals import ApprovalLock

    lock = ApprovalLock(_settings().templates_dir)
    table = Table("template", "state", "approved by", "at")
    for name in lock.template_names():
        st = lock.status(name)
        table.add_row(name, st.state, st.approval.approved_by if st.approval else "",
                      st.approval.approved_at if st.approval else "")
    out.print(table)


@templates_app.command("approve")
def templates_approve(
    names: Annotated[list[str] | None, typer.Argument(help="Templates (default: all)")] = None,
    by: Annotated[str, typer.Option(help="Approver's name")] = "",
) -> None:
    """Approve the current content of templates (records hash, approver and time)."""
    from crisiscomms.render.approvals import ApprovalLock, two_person_rule

    settings = _settings()
    lock = ApprovalLock(settings.templates_dir)
    rule = two_person_rule(settings.playbooks_dir)
    changed = _run(lambda: lock.approve(names or lock.template_names(), by, two_person=rule))
    out.print(f"approved {len(changed)} template(s) by {by}" if changed
              else "nothing to approve: every template already approved as it is")
    for name in changed:
        out.print(f"  {name}")


@templates_app.command("propose")
def templates_propose(
    names: Annotated[list[str], typer.Argument(help="Templates you wrote or changed")],
    by: Annotated[str, typer.Option(help="Author's name")],
) -> None:
    """Record who wrote the current content (a two-person playbook refuses their approval)."""
    from crisiscomms.render.approvals import ApprovalLock

    lock = ApprovalLock(_settings().templates_dir)
    for name in _run(lambda: lock.propose(names, by)):
        out.print(f"proposed {name} by {by}")


@templates_app.command("diff")
def templates_diff(
    names: Annotated[list[str] | None, typer.Argument(help="Templates (default: all changed)")]
    = None,
) -> None:
    """Show what changed in templates since they were approved (exit 1 when anything did)."""
    from crisiscomms.render.approvals import ApprovalLock

    lock = ApprovalLock(_settings().templates_dir)
    changed = False
    for name in names or lock.template_names():
        text = _run(lambda name=name: lock.diff(name))  # type: ignore[misc]
        if text:
            changed = True
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if not changed:
        out.print("no changes since approval")
    raise typer.Exit(1 if changed else 0)


@app.command("lint")
def lint_cmd(
    path: Annotated[Path | None, typer.Argument(
        help="A project folder, a playbooks folder or one playbook file (default: configured)")]
    = None,
) -> None:
    """Check every playbook and template: facts, locales, variables, limits, canonical facts."""
    from rich.markup import escape

    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.playbook.lint import lint, resolve_paths

    settings = _settings()
    playbooks_dir, templates_dir, names = resolve_paths(path, settings.playbooks_dir,
                                                        settings.templates_dir)
    checked, problems = lint(playbooks_dir, templates_dir, CHANNEL_CLASSES, names)
    for problem in problems:
        err.print(f"[red]error:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    out.print(f"linted {len(checked)} playbook(s) ({', '.join(checked)}): "
              f"{len(problems)} problem(s)")
    if problems or not checked:
        raise typer.Exit(1)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8030,
) -> None:
    """Serve the generated status page locally (any static host can serve it too)."""
    from crisiscomms.statuspage.server import serve_status_page

    settings = _settings()
    server = serve_status_page(settings.resolved_status_page_dir / "site", port=port)
    out.print(f"status page: http://127.0.0.1:{server.server_port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


def _status_page(settings: Settings) -> Any:
    from crisiscomms.channels.wiring import build_status_page

    return build_status_page(settings)


def _aware(value: str, option: str) -> Any:
    from datetime import datetime

    from crisiscomms.core.errors import FactsError

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FactsError(f"{option} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise FactsError(f"{option} needs an offset, e.g. 2026-11-25T02:00:00+00:00")
    return parsed


@maintenance_app.command("schedule")
def maintenance_schedule(
    name: Annotated[str, typer.Option(help="What the maintenance is, as readers see it")],
    components: Annotated[str, typer.Option(help="Comma-separated component names")],
    start: Annotated[str, typer.Option(help="Start, ISO 8601 with offset")],
    end: Annotated[str, typer.Option(help="End, ISO 8601 with offset")],
    body: Annotated[str | None, typer.Option(help="Announcement text (default: standard)")]
    = None,
) -> None:
    """Announce a maintenance window; it moves scheduled → in_progress → completed by time
    at every build (``crisiscomms statuspage build``, or any update)."""
    from crisiscomms.core.errors import FactsError

    settings = _settings()
    names = [c.strip() for c in components.split(",") if c.strip()]

    def schedule() -> str:
        try:
            page = _status_page(settings)
            maintenance_id: str = page.schedule_maintenance(
                name=name, components=names, start=_aware(start, "--start"),
                end=_aware(end, "--end"), body=body)
        except ValueError as exc:
            raise FactsError(str(exc)) from None
        return maintenance_id

    maintenance_id = _run(schedule)
    out.print(f"maintenance {maintenance_id} scheduled: {name} ({', '.join(names)}), "
              f"{start} to {end}")


@statuspage_app.command("build")
def statuspage_build() -> None:
    """Rebuild and publish the status page from its own state (run it from cron: maintenance
    windows start and end with the clock). Needs neither the database nor Prefect."""
    settings = _settings()
    build = _run(lambda: _status_page(settings).rebuild())
    out.print(f"status page published: {build}")


@app.command()
def subscriptions(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8040,
) -> None:
    """Serve the status page's subscribe endpoint (POST /v1/subscribe, confirm, unsubscribe)."""
    import uvicorn

    from crisiscomms.api.subscriptions import create_app

    settings = _settings()
    out.print(f"subscriptions: http://127.0.0.1:{port}/v1/subscribe")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


@app.command()
def demo(
    recipients: Annotated[int, typer.Option(min=1, help="Demo subscribers")] = 1000,
    dashboard: Annotated[bool, typer.Option(help="Start the Streamlit dashboard")] = True,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port")] = 8501,
    status_port: Annotated[int, typer.Option(help="Status page port")] = 8030,
) -> None:
    """The embedded default: SQLite, emulators, a drill outage, status page and dashboard."""
    import secrets
    import subprocess
    import threading

    from crisiscomms.statuspage.server import serve_status_page
    from crisiscomms.testing.drill import run_drill
    from crisiscomms.testing.emulators import start_emulators

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _engine(settings)
    sg_key, x_token = f"SG.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(24)
    pair = start_emulators(sendgrid_key=sg_key, x_token=x_token)
    out.print(f"emulators: SendGrid {pair.sendgrid.url}, X {pair.x.url}")
    out.print(f"running a drill outage to {recipients} demo subscribers "
              "(the first flow starts Prefect's temporary server: 10-20 s)...")
    report = _run(lambda: run_drill(playbook_name="outage", recipients=recipients,
                                    publish=_publish, base=settings,
                                    workspace=settings.data_dir,
                                    emulators=(pair, sg_key, x_token)))
    _print_drill(report)
    site = settings.resolved_status_page_dir / "site"
    server = serve_status_page(site, port=status_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out.print(f"status page: http://127.0.0.1:{server.server_port}/  (files: {site})")
    out.print(f"support holding statements: {settings.data_dir / 'support'}")
    if not dashboard:
        server.shutdown()
        pair.stop()
        return
    out.print(f"dashboard: http://127.0.0.1:{dashboard_port}/  (Ctrl-C to stop)")
    app_path = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app_path),
               "--server.headless", "true", "--server.port", str(dashboard_port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    try:
        subprocess.run(command, check=False)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        pair.stop()


@db_app.command("status")
def db_status() -> None:
    """The revision the database is at, beside the newest the code knows."""
    from crisiscomms.core.database import current_revisions, head_revisions, make_engine

    engine = make_engine(_settings().resolved_database_url)
    current, head = _run(lambda: (current_revisions(engine), head_revisions()))
    state = "up to date" if current == head else "behind: run crisiscomms db upgrade"
    out.print(f"database at {', '.join(sorted(current)) or 'no revision'}; "
              f"newest {', '.join(sorted(head))} ({state})")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest revision (every command also does this first)."""
    from crisiscomms.core.database import current_revisions

    engine = _engine(_settings())
    out.print(f"database at {', '.join(sorted(current_revisions(engine)))}")
