"""Poll X for mentions and replies as a Prefect flow: the deployment form of the poller that
``crisiscomms listen`` runs in a thread
(:func:`crisiscomms.reactions.sources.x_mentions.run_x_poller`).

Deploy it on an interval schedule (``prefect deploy flows/listen_x.py:listen_x --interval 60``
from a workspace, or ``listen_x.serve(interval=60)``): each run polls once by default, reading
from the cursors stored in the database, so runs on any worker continue where the last one
stopped, and a rate limit learnt by one run is honoured by the next (its reset is stored too).
``polls`` > 1 keeps one run polling, waiting between polls as X's limits say; no wait is ever
longer than X's 15-minute window.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from sqlmodel import Session

from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.settings import Settings
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.sources.x_client import MAX_WAIT_S, XReader
from crisiscomms.reactions.sources.x_mentions import poll_once
from crisiscomms.reactions.triage import Triager


@flow(name="listen-x", log_prints=False)
def listen_x(polls: int = 1, playbook: str | None = None) -> dict[str, Any]:
    """Poll X ``polls`` times; ``playbook`` names the playbook whose ``listening:`` cues and
    VIPs triage uses (none: the built-in rules). Returns each poll's figures."""
    if polls < 1:
        raise ValueError("polls must be at least 1")
    settings = Settings()
    reader = XReader.from_settings(settings)
    if reader is None:
        return {"configured": False, "polls": []}
    triager = Triager.for_playbook(
        load_playbook(playbook, settings.playbooks_dir).listening if playbook else None)
    engine = make_engine(settings.resolved_database_url)
    results: list[dict[str, Any]] = []
    try:
        init_db(engine)
        for n in range(polls):
            with Session(engine, expire_on_commit=False) as session:
                result = poll_once(session, reader, settings, triager=triager)
            results.append(result.as_dict())
            if n + 1 < polls:
                time.sleep(min(MAX_WAIT_S, max(1.0, result.wait_s)))
    finally:
        reader.close()
        engine.dispose()
    return {"configured": True, "polls": results}
