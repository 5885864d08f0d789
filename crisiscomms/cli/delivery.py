"""Delivery after the fact: resume after a crash, retry failures, list failures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out


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
    result = common.run_or_exit(lambda: common.run_resume(incident, lease))
    common.print_reconciled(result)
    common.print_publish({**result, "stage": "resume"})


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

    engine = common.open_engine(common.load_settings())
    count, result = common.run_or_exit(lambda: retry_failed(
        engine, incident, channel=channel, include_unconfirmed=unconfirmed,
        publish=lambda ref: common.run_resume(ref, None)))
    out.print(f"re-queued {count} recipient(s) of {incident}"
              + (f" on {channel}" if channel else ""))
    if result is not None:
        common.print_publish({**result, "stage": "retry"})


@app.command("failures")
def failures_cmd(
    incident: Annotated[str | None, typer.Argument(help="Incident reference (default: all)")]
    = None,
) -> None:
    """Failed and unconfirmed deliveries with the provider's reason."""
    from crisiscomms.incident.views import delivery_failures

    engine = common.open_engine(common.load_settings())
    rows = common.run_or_exit(lambda: delivery_failures(engine, incident))
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

