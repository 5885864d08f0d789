"""Rehearsal: the drill, the provider emulators and the embedded demo."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out
from crisiscomms.core.settings import Settings


@app.command()
def drill(
    playbook: Annotated[str, typer.Argument(help="Playbook to rehearse")],
    recipients: Annotated[int, typer.Option(min=0, help="Synthetic subscribers")] = 100,
    facts: Annotated[Path | None, typer.Option(help="Facts overriding the drill facts")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Keep status page + sent.jsonl")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    reactions: Annotated[int, typer.Option(
        min=0, help="A crowd of this many reacts through the real receivers (X, email "
                    "replies, tickets, provider events, CSAT); the report shows how triage "
                    "and linking did")] = 0,
) -> None:
    """Rehearse a playbook of this workspace end to end against the emulators.

    In a temporary database, against local SendGrid and X emulators: nothing reaches a person.
    """
    from crisiscomms.testing.drill import dumps, run_drill

    settings = common.load_settings()
    report = common.run_or_exit(lambda: run_drill(playbook_name=playbook, recipients=recipients,
                                    publish=common.publish, base=settings, facts_file=facts,
                                    out=out_dir, reactions=reactions,
                                    listen_app=common.listen_app, resume=common.run_resume,
                                    sms_app=common.sms_app))
    if as_json:
        sys.stdout.write(dumps(report) + "\n")
    else:
        _print_drill(report)
    failed = sum(c["failed"] for c in report["channels"].values())
    if failed or report["duplicates"]:
        raise typer.Exit(1)


def _print_drill(report: Mapping[str, Any]) -> None:
    deferred = report.get("deferred") or {}
    table = Table("channel", "planned", "sent", "failed", "deferred",
                  title=f"drill {report['incident_id']} ({report['playbook']})")
    for channel, c in report["channels"].items():
        table.add_row(channel, str(c["planned"]), str(c["sent"]), str(c["failed"]),
                      str(deferred.get(channel, 0)))
    out.print(table)
    out.print(f"emulators received: {report['emulator_received']}; duplicates: "
              f"{report['duplicates']}; {report['elapsed_s']} s")
    if report.get("sms_status"):
        out.print(f"SMS status callbacks in the ledger: {report['sms_status']}")
    if "reactions" in report:
        _print_reactions(report["reactions"])
    if "out" in report:
        out.print(f"outputs kept in {report['out']}")


def _print_reactions(r: Mapping[str, Any]) -> None:
    table = Table("source", "sent", "stored", "linked", "needs a human", "negative",
                  title=f"reactions ({r['played']} played)")
    for source, c in r["by_source"].items():
        table.add_row(source, str(c["sent"]), str(c["stored"]), str(c["linked"]),
                      str(c["needs_human"]), str(c["negative"]))
    events = r["events"]
    table.add_row("provider events", str(events["sent"]), str(events["stored"]), "", "", "")
    out.print(table)
    t = r["triage"]
    out.print(f"linked as the crowd meant: {r['linked_as_meant']}; triage vs the crowd's labels: "
              f"sentiment {t['sentiment_agreement']}, negative recall {t['negative_recall']} "
              f"at precision {t['negative_precision']}, needs-a-human recall "
              f"{t['needs_human_recall']} at precision {t['needs_human_precision']}; "
              f"{r.get('spikes', 0)} spike(s), {r.get('alerts_sent', 0)} alert(s), "
              f"{r.get('automatic_replies', 0)} automatic repl(ies); {r['elapsed_s']} s",
              highlight=False)


@app.command()
def emulators(
    sendgrid_port: Annotated[int, typer.Option(help="SendGrid emulator port")] = 8025,
    x_port: Annotated[int, typer.Option(help="X emulator port")] = 8026,
    twilio_port: Annotated[int, typer.Option(help="Twilio emulator port")] = 8027,
    event_webhook: Annotated[str | None, typer.Option(
        help="POST signed SendGrid events of every accepted email here, e.g. "
             "http://127.0.0.1:8040/v1/sendgrid/events (crisiscomms listen)")] = None,
) -> None:
    """Start the SendGrid, X and Twilio emulators on loopback until interrupted, with the
    Mastodon, Bluesky, Slack, Teams and webhook-receiver emulators on free ports."""
    import secrets

    from crisiscomms.testing.drill import emulator_environment
    from crisiscomms.testing.emulators import start_emulators

    env_file = _emulators_env_file()
    sg_key, x_token = f"SG.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(24)
    pair = start_emulators(sendgrid_key=sg_key, x_token=x_token, sendgrid_port=sendgrid_port,
                           x_port=x_port, event_webhook_url=event_webhook,
                           twilio_port=twilio_port)
    out.print(f"SendGrid emulator: {pair.sendgrid.url}/v3/mail/send")
    out.print(f"X emulator:        {pair.x.url}/2/tweets")
    out.print(f"Twilio emulator:   {pair.twilio.url}/2010-04-01/Accounts/"
              f"{pair.twilio.account_sid}/Messages.json")
    if pair.more is not None:
        out.print(f"Mastodon emulator: {pair.more.mastodon.url}/api/v1/statuses")
        out.print(f"Bluesky emulator:  {pair.more.bluesky.url}/xrpc")
        out.print(f"Slack, Teams:      {pair.more.slack.url}, {pair.more.teams.url} "
                  "(incoming webhooks)")
        out.print(f"webhook receiver:  {pair.more.webhook.hook_url}")
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


def _emulators_env_file() -> Path:
    """``data/emulators.env`` of this workspace; outside any, a private temporary file (this
    command runs anywhere and creates nothing in the current directory)."""
    import tempfile

    from crisiscomms.core.errors import NotInWorkspaceError

    def settings_or_none() -> Settings | None:
        try:
            return Settings()
        except NotInWorkspaceError:
            return None

    settings = common.run_or_exit(settings_or_none)  # a named workspace that is not one: refused
    if settings is None:
        return Path(tempfile.mkdtemp(prefix="crisiscomms-emulators-")) / "emulators.env"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.data_dir / "emulators.env"


@app.command()
def demo(
    recipients: Annotated[int, typer.Option(min=1, help="Demo subscribers")] = 1000,
    dashboard: Annotated[bool, typer.Option(help="Start the Streamlit dashboard")] = True,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port")] = 8501,
    status_port: Annotated[int, typer.Option(help="Status page port")] = 8030,
    reactions: Annotated[int, typer.Option(
        min=0, help="A crowd of this many reacts (the dashboard's reactions page)")] = 1000,
) -> None:
    """The embedded default: SQLite, emulators, a drill outage with a reacting crowd, status
    page and dashboard."""
    import secrets
    import subprocess
    import threading

    from crisiscomms.statuspage.server import serve_status_page
    from crisiscomms.testing.drill import run_drill, workspace_environment
    from crisiscomms.testing.emulators import start_emulators

    settings = common.load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    common.open_engine(settings)
    sg_key, x_token = f"SG.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(24)
    pair = start_emulators(sendgrid_key=sg_key, x_token=x_token)
    out.print(f"emulators: SendGrid {pair.sendgrid.url}, X {pair.x.url}")
    out.print(f"running a drill outage to {recipients} demo subscribers "
              "(the first flow starts Prefect's temporary server: 10-20 s)...")
    report = common.run_or_exit(lambda: run_drill(playbook_name="outage", recipients=recipients,
                                    publish=common.publish, base=settings,
                                    data_dir=settings.data_dir,
                                    emulators=(pair, sg_key, x_token), reactions=reactions,
                                    listen_app=common.listen_app, resume=common.run_resume,
                                    sms_app=common.sms_app))
    _print_drill(report)
    wired = {**os.environ, **workspace_environment(settings.data_dir, pair, sg_key, x_token,
                                                   database_url=settings.database_url)}
    _demo_event(wired, settings.data_dir)
    site = settings.resolved_status_page_dir / "site"
    server = serve_status_page(site, port=status_port,
                               subscriptions_url=settings.subscriptions_url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out.print(f"status page: http://127.0.0.1:{server.server_port}/  (files: {site})")
    out.print(f"support holding statements: {settings.data_dir / 'support'}")
    if not dashboard:
        server.shutdown()
        pair.stop()
        return
    from crisiscomms.cli.users import dashboard_command
    from crisiscomms.identity.users import UserStore
    from crisiscomms.testing.demo_users import ensure_demo_users

    users = settings.resolved_dashboard_users_path
    passwords = ensure_demo_users(users)
    if passwords:
        table = Table("user id", "password", "roles", title=f"demo sign-ins ({users})")
        store = UserStore.load(users)
        for user_id, password in passwords.items():
            record = store.records[user_id]
            table.add_row(user_id, password, ", ".join(sorted(r.value for r in record.roles)))
        out.print(table)
    else:
        out.print(f"sign in with the users of {users} (crisiscomms users list; a forgotten "
                  "password: crisiscomms users set ID --password)", highlight=False)
    out.print(f"dashboard: http://127.0.0.1:{dashboard_port}/  (Ctrl-C to stop)")
    command = dashboard_command("127.0.0.1", dashboard_port)
    # the dashboard publishes what the PR lead approves: to these same emulators, as a drill
    try:
        subprocess.run(command, check=False, env=wired)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        pair.stop()


def _demo_event(environment: dict[str, str], data_dir: Path) -> None:
    """Events in: an Alertmanager alert to the intake API starts the next incident's
    acknowledgement on its own (``testing/demo_events.py``)."""
    from crisiscomms.api.intake import create_app
    from crisiscomms.flows.dispatch import make_outbox_loop
    from crisiscomms.testing.demo_events import SOURCE, post_demo_alert

    out.print("events in: posting a Prometheus Alertmanager alert (HighErrorRate on the api "
              "service) to the intake API...")
    event = common.run_or_exit(lambda: post_demo_alert(
        environment, data_dir=data_dir, create_app=create_app,
        make_outbox_loop=make_outbox_loop))
    sent = ", ".join(f"{channel} {count}" for channel, count in event.sent.items())
    out.print(f"  {event.incident_ref}: acknowledged {event.seconds:.2f} s after the alert, "
              f"nobody approving (auto_send): {sent}", highlight=False)
    out.print(f"  source {SOURCE}, its token in {event.token_file}; try it yourself with "
              f"`crisiscomms api` and docs/intake.md", highlight=False)
