"""``crisiscomms reactions ...``: score texts, correct labels, train the triage model."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import out, reactions_app

__all__ = ["reactions_app"]


# -- list and watch (spikes, alerts, automatic replies) -----------------------------------------


@reactions_app.command("list")
def list_cmd(
    incident: Annotated[str | None, typer.Option(help="Only this incident (reference)")] = None,
    needs_human: Annotated[bool, typer.Option(
        "--needs-human", help="Only reactions triage flagged for a person")] = False,
    limit: Annotated[int, typer.Option(help="How many, newest first (at most 500)")] = 50,
    before: Annotated[int | None, typer.Option(
        help="Page: reactions older than this id (the last id of the previous page)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Reactions newest first, with triage's verdict and reasons; texts shown escaped."""
    from sqlmodel import Session

    from crisiscomms.reactions.views import reactions

    settings = common.load_settings()
    engine = common.open_engine(settings)
    with Session(engine) as session:
        rows = common.run_or_exit(lambda: reactions(
            session, incident_ref=incident, needs_human=needs_human, limit=limit,
            before_id=before))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict(), ensure_ascii=False))
        return
    table = Table("id", "incident", "source", "author", "locale", "sentiment", "human",
                  "reasons", "text")
    for row in rows:
        table.add_row(str(row.id), escape(row.incident_ref or ""), row.source,
                      escape(_printable(row.author)), escape(row.locale or row.language or ""),
                      row.sentiment or "", "yes" if row.needs_human else "",
                      escape(", ".join(row.reasons)), escape(_printable(row.text, 120)))
    out.print(table)
    if rows and len(rows) == limit:
        out.print(f"more: crisiscomms reactions list --before {rows[-1].id}"
                  + (f" --incident {incident}" if incident else "")
                  + (" --needs-human" if needs_human else ""))


def _printable(text: str, limit: int | None = None) -> str:
    """A terminal-safe one-line view: control characters (escape sequences too) shown as
    U+FFFD, never interpreted by the terminal."""
    shown = "".join(ch if ch.isprintable() else ("⏎" if ch == "\n" else "\ufffd")
                    for ch in text)
    return shown if limit is None or len(shown) <= limit else shown[: limit - 1] + "…"


@reactions_app.command("watch")
def watch_cmd(
    once: Annotated[bool, typer.Option(
        "--once", help="One pass, then exit (cron, CI); exit 1 when something failed")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print each pass as JSON")] = False,
) -> None:
    """Watch the open incidents: detect spikes, alert the PR lead (email, Slack/Teams),
    send the playbooks' automatic replies. Every watch_interval_s until interrupted."""
    import time
    from dataclasses import replace

    from crisiscomms.channels.alerts import alert_targets
    from crisiscomms.channels.registry import build_channels, configured_rates
    from crisiscomms.reactions.replies import ReplyCursor, send_policy
    from crisiscomms.reactions.watch import watch_once

    settings = common.load_settings()
    engine = common.open_engine(settings)
    channels = build_channels(settings)
    targets = alert_targets(settings)
    cursor = ReplyCursor()
    policy = replace(send_policy(settings), rate_per_s=configured_rates(settings))
    if not as_json:
        out.print(f"watching: alerts to {', '.join(t.name for t in targets) or 'nobody'}; "
                  f"replies on {', '.join(channels) or 'no channel'}")
    while True:
        report = common.run_or_exit(lambda: watch_once(
            engine, settings, channels=channels, targets=targets, cursor=cursor,
            policy=policy))
        if as_json:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            _print_watch(report)
        if once:
            raise typer.Exit(0 if report.ok else 1)
        time.sleep(settings.watch_interval_s)


def _print_watch(report: Any) -> None:
    replies = report.replies
    out.print(f"{report.incidents} open incident(s): {len(report.spikes)} new spike(s), "
              f"{len(report.alerts_sent)} alert(s) sent, {replies.sent} automatic repl"
              f"{'y' if replies.sent == 1 else 'ies'} sent"
              + (f", {replies.capped} left for the next pass (caps)" if replies.capped else ""))
    for spike in report.spikes:
        out.print(f"  spike: {escape(spike['incident'])} {spike['channel']} {spike['locale']} "
                  f"{spike['volume']} reactions from {spike['window_start']}")
    for line in (*report.alerts_failed, *replies.refused, *replies.errors, *report.errors):
        common.err.print(f"  {escape(line)}")
