"""Signals per second stored by ``intake.service.accept``: 1,000 one-signal requests in one
call (what the API's writer thread hands it under load), each with a delivery id (replay
memory), on SQLite and on a throwaway PostgreSQL (fsync on), same run.

Scenarios, each ``--rounds`` times on fresh keys (the median is printed):

- ``storm``: 1,000 alerts of one Alertmanager group (an alert storm): one ``start``, the rest
  ``grouped``;
- ``distinct``: 1,000 alerts of 1,000 different groups (the worst case: 1,000 incidents opened
  at once, one reference each);
- ``resend``: the storm's 1,000 alerts sent again under new delivery ids (Alertmanager's
  repeat): 1,000 ``duplicate``.

Also ``route_per_s``: ``intake.rules.route`` over the example workspace's playbooks (done by
the API before ``accept``, outside the transaction).

    uv run python bench/intake_accept.py [--signals 1000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, database, emit, workdir

from crisiscomms.core.database import init_db, make_engine
from crisiscomms.intake.contract import IntakeRequest, Routed, Signal, SourceKind
from crisiscomms.intake.rules import route, workspace_playbooks
from crisiscomms.intake.service import accept

LABELS = {"alertname": "APIDown", "severity": "critical", "service": "api"}


def signals(n: int, tag: str, *, groups: int) -> list[Signal]:
    started = datetime(2026, 12, 1, 7, 5, tzinfo=UTC)
    return [Signal(source="am-prod", kind=SourceKind.alertmanager,
                   dedup_key=f"{tag}-fp-{i}@2026-12-01T07:05:00Z",
                   group_key=f"{tag}-group-{i % groups}", status="firing", labels=LABELS,
                   started_at=started, summary="api 5xx above 20% for 5m") for i in range(n)]


def requests(sigs: list[Signal], books: Any, tag: str, now: datetime) -> list[IntakeRequest]:
    return [IntakeRequest(source="am-prod", delivery_id=f"{tag}-msg-{i}",
                          routed=[Routed(s, route(s, books, now=now))])
            for i, s in enumerate(sigs)]


def per_s(engine: Any, reqs: list[IntakeRequest], now: datetime) -> float:
    t0 = time.perf_counter()
    results = accept(engine, reqs, now=now, window_s=300)
    elapsed = time.perf_counter() - t0
    assert len(results) == len(reqs) and not any(r.replayed for r in results)
    return len(reqs) / elapsed


def backend_figures(url: str, books: Any, n: int, rounds: int) -> dict[str, float]:
    engine = make_engine(url)
    init_db(engine)
    now = datetime.now(UTC)
    figures: dict[str, list[float]] = {"storm": [], "distinct": [], "resend": []}
    for r in range(rounds + 1):  # round 0 warms the caches and the pool up
        at = now + timedelta(seconds=r)
        storm = signals(n, f"s{r}", groups=1)
        results = {
            "storm": per_s(engine, requests(storm, books, f"s{r}", at), at),
            "distinct": per_s(engine, requests(signals(n, f"d{r}", groups=n), books, f"d{r}",
                                               at), at),
            "resend": per_s(engine, requests(storm, books, f"again{r}", at), at),
        }
        if r:
            for key, value in results.items():
                figures[key].append(value)
    engine.dispose()
    return {f"{key}_per_s": round(statistics.median(values)) for key, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    books = workspace_playbooks(ROOT / "playbooks")
    sample = signals(args.signals, "route", groups=1)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for s in sample:
        route(s, books, now=now)
    route_rate = len(sample) / (time.perf_counter() - t0)
    report: dict[str, Any] = {"signals_per_call": args.signals, "rounds": args.rounds,
                              "route_per_s": round(route_rate)}
    work = workdir()
    for backend in ("sqlite", "postgresql"):
        with database(backend, work) as url:
            for key, value in backend_figures(url, books, args.signals, args.rounds).items():
                report[f"{backend}_{key}"] = value
    emit(report, args.json)


if __name__ == "__main__":
    main()
