"""X mentions and replies per second through the poller, including triage and storage.

A drill incident publishes the outage playbook's first stage to the X emulator (five languages,
one thread each); a seeded crowd (``crisiscomms.testing.crowd``) then answers: replies, replies
to replies deeper in the threads, and mentions. The poller (``poll_once``) is run until it has
nothing left to read: mentions timeline and conversation searches, pages of 100, triage
(``Triager``, cue rules), insert-or-ignore, linking to the message each post answers, cursors.

Printed: how long the crowd took to draw and to post, the polls, pages and requests it took,
posts stored per second (wall and process CPU: the emulator runs in this process too, so both
sides of the loopback are counted, a conservative figure), and how many were linked exactly
where the crowd answered.

    uv run python bench/x_listening.py [--posts 5000] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import pending_ids
from crisiscomms.delivery.sender import publish_deliveries
from crisiscomms.identity.identities import system_identity
from crisiscomms.incident.service import plan_bundle, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.models import Reaction
from crisiscomms.reactions.sources.x_client import XReader
from crisiscomms.reactions.sources.x_mentions import poll_once
from crisiscomms.testing.audiences import drill_recipients
from crisiscomms.testing.crowd import X_MENTION, X_REPLY, Crowd, CrowdMix, published_from_db
from crisiscomms.testing.drill import environment, workspace_environment
from crisiscomms.testing.emulators import start_emulators

ROOT = Path(__file__).resolve().parent.parent


def measure(posts: int, seed: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="crisiscomms-bench-x-"))
    try:
        with start_emulators(sendgrid_key="SG.bench", x_token="bench-x") as pair:
            env = workspace_environment(folder, pair, "SG.bench", "bench-x",
                                        database_url=f"sqlite:///{folder / 'bench.db'}",
                                        playbooks_dir=ROOT / "playbooks",
                                        templates_dir=ROOT / "templates")
            with environment(env):
                settings = Settings(_env_file=None)  # type: ignore[call-arg]
                engine = make_engine(settings.resolved_database_url)
                init_db(engine)
                with session_scope(engine) as session:
                    insert_recipients(session, drill_recipients(100))
                incident_id = _publish_x(settings, engine)
                with Session(engine) as session:
                    published = published_from_db(session, incident_id,
                                                  our_address=settings.email_from)
                crowd = Crowd(published, seed=seed,
                              mix=CrowdMix(sources={X_REPLY: 0.7, X_MENTION: 0.3}))
                started = time.perf_counter()
                items = crowd.generate(posts)
                drawn_s = time.perf_counter() - started
                started = time.perf_counter()
                crowd.play_x(items, pair.x)
                posted_s = time.perf_counter() - started
                reader = XReader.from_settings(settings)
                assert reader is not None
                polls = pages = stored = 0
                requests_before = pair.x.stats()["requests"]
                wall, cpu = time.perf_counter(), time.process_time()
                while True:
                    with Session(engine, expire_on_commit=False) as session:
                        result = poll_once(session, reader, settings)
                    polls, pages, stored = polls + 1, pages + result.pages, \
                        stored + result.stored
                    if result.errors:
                        raise SystemExit(f"poll failed: {result.errors}")
                    if not result.backlog:
                        break
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                with Session(engine) as session:
                    got = {r.source_id: r.message_id for r in session.exec(
                        select(Reaction).where(col(Reaction.incident_id) == incident_id))}
                linked = sum(1 for i in items
                             if got.get(crowd.posted[i.n], -1) == i.expected.message_id)
                reader.close()
                engine.dispose()
                return {"posts": posts, "seed": seed, "crowd_draw_s": round(drawn_s, 3),
                        "crowd_post_s": round(posted_s, 3), "polls": polls, "pages": pages,
                        "requests": pair.x.stats()["requests"] - requests_before,
                        "stored": stored, "poll_s": round(wall, 3),
                        "stored_per_s": round(stored / wall), "cpu_s": round(cpu, 3),
                        "stored_per_cpu_s": round(stored / cpu) if cpu else None,
                        "linked_as_answered": linked,
                        "max_pages_per_query": settings.x_poll_max_pages}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish_x(settings: Settings, engine: Any) -> int:
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts={**facts, "incident_ref": "BENCH-X-1"},
                     actor=system_identity("bench"))
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    channels = build_channels(settings)
    x_name = next(n for n, c in CHANNEL_CLASSES.items() if c.threaded)
    with Session(engine) as session:
        rows = pending_ids(session, bundle.message_ids)[x_name]
    publish_deliveries(engine, {x_name: channels[x_name]}, rows,
                       playbooks_dir=settings.playbooks_dir, max_attempts=2)
    return bundle.incident_id


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.posts, args.seed)
    if args.json:
        json.dump(figures, sys.stdout)
        sys.stdout.write("\n")
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
