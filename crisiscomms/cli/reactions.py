"""``crisiscomms reactions ...``: score texts, correct labels, train the triage model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import out, reactions_app
from crisiscomms.reactions.models import Sentiment

__all__ = ["reactions_app"]

SCORE_BATCH = 1000
"""Texts scored at once by ``reactions score``: big enough for numpy, small enough that
memory stays flat however long the input."""


class BadLine(ValueError):
    """A line of ``reactions score``'s input that is not ``{"id": ..., "text": "..."}``."""

    def __init__(self, number: int, why: str) -> None:
        super().__init__(f"line {number}: {why}")


def _parse(number: int, line: str) -> tuple[Any, str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(number, f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise BadLine(number, 'expected an object {"id": ..., "text": "..."}')
    if "id" not in item:
        raise BadLine(number, 'no "id"')
    if isinstance(item["id"], dict | list):
        raise BadLine(number, '"id" must be a string or a number')
    text = item.get("text")
    if not isinstance(text, str):
        raise BadLine(number, '"text" must be a string')
    return item["id"], text


def score_stream(source: IO[str], sink: IO[str], triager: Any,
                 batch: int = SCORE_BATCH) -> int:
    """Score JSONL ``{"id", "text"}`` from ``source`` onto ``sink``, in input order, ``batch``
    texts at a time. Blank lines are skipped. A bad line raises :class:`BadLine` after every
    line before it has been written, and nothing for it or after it. Returns lines scored."""
    done = 0
    ids: list[Any] = []
    texts: list[str] = []

    def flush() -> None:
        nonlocal done
        for ident, verdict in zip(ids, triager.score(texts), strict=True):
            sink.write(json.dumps({"id": ident, **verdict.as_dict()}, ensure_ascii=False))
            sink.write("\n")
        done += len(ids)
        ids.clear()
        texts.clear()
        sink.flush()

    for number, line in enumerate(_lines(source), start=1):
        if not line.strip():
            continue
        try:
            ident, text = _parse(number, line)
        except BadLine:
            flush()
            raise
        ids.append(ident)
        texts.append(text)
        if len(texts) >= batch:
            flush()
    flush()
    return done


def _lines(source: IO[str]) -> Iterator[str]:
    yield from source


@reactions_app.command("score")
def score_cmd(
    playbook: Annotated[str | None, typer.Option(
        help="Use this playbook's cue lists and VIPs too (needs a workspace)")] = None,
    batch: Annotated[int, typer.Option(min=1, max=100_000,
                                       help="Texts scored at once")] = SCORE_BATCH,
) -> None:
    """Triage JSONL {"id", "text"} from stdin: JSONL {"id", "sentiment", "needs_human",
    "reasons", "language", "score"} on stdout, in input order. A bad line stops with exit 2
    and names its number; every line before it has been written, nothing after."""
    from crisiscomms.reactions.triage import Triager

    triager = Triager()
    if playbook is not None:
        from crisiscomms.playbook.loader import load_playbook

        settings = common.load_settings()
        book = common.run_or_exit(lambda: load_playbook(playbook, settings.playbooks_dir))
        triager = Triager.for_playbook(book.listening, model_path=settings.triage_model_path)
    try:
        triager.matcher  # noqa: B018  (compile the cues now: a bad cue fails before reading)
        score_stream(sys.stdin, sys.stdout, triager, batch)
    except BadLine as exc:
        common.err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    except ValueError as exc:
        common.err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None


@reactions_app.command("correct")
def correct_cmd(
    reaction_id: Annotated[int, typer.Argument(help="The reaction's id")],
    sentiment: Annotated[Sentiment, typer.Option(help="The right sentiment")],
    needs_human: Annotated[bool | None, typer.Option(
        "--needs-human/--no-needs-human", help="Whether it needs a person (default: keep)")]
    = None,
    by: Annotated[str | None, typer.Option(
        help="The name shown in the audit trail (display only: who corrects is your OS "
             "account or signing key)")] = None,
) -> None:
    """Correct triage's label of a reaction: recorded with who you are, audited, and used by
    the next ``reactions train``."""
    from crisiscomms.reactions.triage.corrections import correct

    settings = common.load_settings()
    me = common.identity(settings, by)
    engine = common.open_engine(settings)
    row = common.run_or_exit(lambda: correct(engine, reaction_id, sentiment=sentiment,
                                             needs_human=needs_human, actor=me))
    common.out.print(f"reaction {reaction_id}: {Sentiment(row.sentiment).value}, "
                     f"{'needs a human' if row.needs_human else 'no human needed'} "
                     f"(correction {row.id} by {me})", highlight=False, markup=False)


@reactions_app.command("train")
def train_cmd(
    check: Annotated[bool, typer.Option(
        "--check", help="Only train, compare and report: write nothing")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Where to write a better model (default: triage_model_path, else "
             "data_dir/triage/sentiment_model.npz)")] = None,
    vader_sdist: Annotated[Path | None, typer.Option(
        help="The vaderSentiment 3.3.2 sdist (default: fetched once into data_dir/triage)")]
    = None,
    corrections: Annotated[bool, typer.Option(
        help="Learn from our people's corrections in the database too")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Train the sentiment model reproducibly (public data + corrections), cross-validate,
    compare with the current model on held-out data, and write it only when it is better."""
    from crisiscomms.reactions.triage.train_run import run_training

    settings = common.load_settings()
    engine = common.open_engine(settings) if corrections else None
    report = common.run_or_exit(lambda: run_training(
        settings, engine=engine, check=check, output=output, vader_sdist=vader_sdist,
        say=(lambda _: None) if as_json else
        (lambda line: common.err.print(line, highlight=False, markup=False, soft_wrap=True))))
    if as_json:
        common.out.print_json(json.dumps(report))
        return
    for line in report["summary"]:
        common.out.print(line, highlight=False, markup=False, soft_wrap=True)



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
