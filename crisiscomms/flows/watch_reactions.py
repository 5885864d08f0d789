"""The listening watcher as a Prefect flow: ``watch-reactions``, one pass per run.

Run it on a schedule instead of ``crisiscomms reactions watch`` as a service: ``python
flows/watch_reactions.py --every 60`` serves it (a Prefect deployment with an interval
schedule, run by this process: ``Flow.serve``), or add a deployment of
``flows/watch_reactions.py:watch_reactions`` with a schedule to your own ``prefect.yaml``.
Both paths call ``reactions/watch.py`` ``watch_once``.
Thin: it builds what the domain may not import (the channels with their configured rates, the
alert targets) and reports the pass. A failed alert or reply fails the run (visible in the
Prefect UI) after everything else of the pass was done; it is retried by the next run.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import timedelta
from typing import Any

from prefect import flow

from crisiscomms.channels.alerts import alert_targets
from crisiscomms.channels.registry import build_channels, configured_rates
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.settings import Settings
from crisiscomms.reactions.replies import send_policy
from crisiscomms.reactions.watch import watch_once


class WatchFailed(Exception):
    """Something of the pass failed (an alert target, a reply); the rest was done."""


@flow(name="watch-reactions", log_prints=False)
def watch_reactions() -> dict[str, Any]:
    """One pass: spikes of the open incidents, their alerts, the automatic replies."""
    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        init_db(engine)
        report = watch_once(
            engine, settings, channels=build_channels(settings),
            targets=alert_targets(settings),
            policy=replace(send_policy(settings), rate_per_s=configured_rates(settings)))
    finally:
        engine.dispose()
    result = report.as_dict()
    if not report.ok:
        raise WatchFailed("; ".join([*report.alerts_failed, *report.replies.errors,
                                     *report.errors]) or "a reply failed")
    return result


def main(argv: list[str] | None = None) -> None:
    """Serve the flow on an interval schedule (``python flows/watch_reactions.py``)."""
    parser = argparse.ArgumentParser(description="Serve the listening watcher on a schedule.")
    parser.add_argument("--every", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between two passes (default 60)")
    parser.add_argument("--name", default="crisiscomms-watch", help="the deployment's name")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error("--every must be positive")
    watch_reactions.serve(name=args.name, interval=timedelta(seconds=args.every))
