"""Dashboard pages' server-side run time at a million deliveries, beside the bare SQL aggregates.

Fills a fresh SQLite file: three outage incidents acknowledged through the engine's own
``trigger`` (their status page and support statements published through the real channels, so
the support page has approved, published words), then, in bulk, ``--deliveries`` email
recipients in ledger rows at the real batch size (``email_batch_size``, 1,000) split 60/30/10
across the incidents, their SendGrid events (``processed`` and ``delivered`` for most,
``open`` for about a third, ``bounce`` for 2 %, spread over two hours), the per-minute event
rollup built from them (the migration's own backfill statement: the live path upserts it where
events are stored) and ``--reactions`` reactions (sentiment, needs-a-human, 2 % CSAT ratings)
over three hours. Bulk rows go in with ``executemany`` in chunks; the fill time is reported.

Then every page of ``dashboard.pages.PAGES`` runs with Streamlit's AppTest for every role
allowed to open it, signed in as ``tests/dashboard_apptest.py`` does: one cold run (Streamlit's
caches cleared first: what the first viewer after a restart or a refresh interval pays) and
``--runs`` steady runs (caches as a viewer gets them). The time is the wall time of
``AppTest.run()`` in this process: the script's execution plus AppTest's own reading of the
result (a few ms), no browser or websocket. Beside them, the bare SQL each figure needs, timed
in the same run: the rollup the executive page reads and the GROUP BY over the raw events it
replaces, the reaction trend, CSAT, the ledger's reach.

Printed with ``--json``: ONE line, ``{"deliveries", "reactions", "pages": {"<role>/<page>":
{"p50_ms", "p95_ms"}}, "bare_sql_ms", "bare_sql_parts_ms": {...}}``: ``bare_sql_ms`` is the sum
of the median bare times of the aggregates the pages run, ``bare_sql_parts_ms`` each of them
and the raw-event GROUP BY the rollup replaces; the fill time and the cold runs go to stderr.

    uv run python bench/dashboard.py [--deliveries 1000000] [--reactions 100000] [--runs 20]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, content_dirs, emit, workdir

START = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)
SHARES = (0.6, 0.3, 0.1)
"""How the deliveries (and reactions) split across the three incidents; the biggest is the
newest, so it is the one the executive page opens on."""
CHUNK = 50_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chunks(rows: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def seed_incidents(engine: Any, settings: Any) -> list[tuple[int, int]]:
    """Three acknowledged outages through the engine, status page and support published;
    (incident id, English email message id) of each, oldest first."""
    from sqlmodel import Session, select

    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.channels.registry import build_channels
    from crisiscomms.delivery.ledger import pending_ids
    from crisiscomms.delivery.sender import publish_deliveries
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.models import Incident, Message
    from crisiscomms.incident.service import plan_bundle, trigger
    from crisiscomms.playbook.loader import load_playbook

    drill = load_playbook("outage", settings.playbooks_dir).drill_facts
    channels = build_channels(settings)
    out = []
    for n in range(len(SHARES)):
        facts = {**drill, "incident_ref": f"BENCH-OUTAGE-{n + 1}",
                 "started_at": (START + timedelta(hours=n)).isoformat(),
                 "next_update_at": (START + timedelta(hours=n, minutes=30)).isoformat()}
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts=facts, actor=system_identity("bench"))
        plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
        with Session(engine) as session:
            ids = [i for channel, group in pending_ids(session, bundle.message_ids).items()
                   if channel in channels for i in group]
        publish_deliveries(engine, channels, ids, playbooks_dir=settings.playbooks_dir,
                           max_attempts=1)
        with Session(engine) as session:
            incident = session.get(Incident, bundle.incident_id)
            assert incident is not None
            incident.drill = False  # watched as a real incident (the overview hides drills)
            session.add(incident)
            message = session.exec(select(Message).where(
                Message.incident_id == bundle.incident_id, Message.channel == "email",
                Message.locale == "en")).one()
            session.commit()
            out.append((bundle.incident_id, int(message.id or 0)))
    return out


def fill_deliveries(engine: Any, incidents: list[tuple[int, int]], total: int,
                    batch_size: int, rng: random.Random) -> int:
    """Ledger rows of ``batch_size`` recipients and their events; returns the events stored."""
    from crisiscomms.delivery.ledger import encode_ids
    from crisiscomms.delivery.models import Delivery, DeliveryEvent

    ledger = Delivery.__table__  # type: ignore[attr-defined]
    events = DeliveryEvent.__table__  # type: ignore[attr-defined]
    next_recipient, stored = 1, 0
    with engine.begin() as conn:
        for (incident_id, message_id), share in zip(incidents, SHARES, strict=True):
            count = round(total * share)
            started = START + timedelta(hours=incidents.index((incident_id, message_id)))
            rows = []
            for batch_no, first in enumerate(range(0, count, batch_size)):
                ids = list(range(next_recipient + first,
                                 next_recipient + min(first + batch_size, count)))
                sent = started + timedelta(seconds=30 + batch_no * 2)
                rows.append({"key": f"bench-{incident_id}-{batch_no}", "incident_id": incident_id,
                             "message_id": message_id, "channel": "email", "locale": "en",
                             "batch_no": batch_no, "recipient_ids": encode_ids(ids),
                             "recipient_count": len(ids), "state": "sent", "attempts": 1,
                             "provider_id": f"sg-{incident_id}-{batch_no}", "created_at": started,
                             "updated_at": sent})
            conn.execute(ledger.insert(), rows)
            key_to_id = dict(conn.exec_driver_sql(
                "SELECT batch_no, id FROM delivery WHERE incident_id = ? AND channel = 'email'",
                (incident_id,)).all())

            def generate(incident_id: int = incident_id, started: datetime = started,
                         count: int = count, key_to_id: dict[int, int] = key_to_id,
                         next_recipient: int = next_recipient) -> Iterator[dict[str, Any]]:
                now = datetime.now(UTC)
                for offset in range(count):
                    recipient = next_recipient + offset
                    batch_no = offset // batch_size
                    base = started + timedelta(seconds=30 + batch_no * 2)
                    kinds = ["processed"]
                    roll = rng.random()
                    if roll < 0.02:
                        kinds.append("bounce")
                    else:
                        kinds.append("delivered")
                        if roll < 0.35:
                            kinds.append("open")
                    for k, kind in enumerate(kinds):
                        at = base + timedelta(seconds=5 * k + (rng.random() * 7200
                                                               if kind == "open" else 0))
                        yield {"event_key": f"{recipient}-{kind}", "delivery_id":
                               key_to_id[batch_no], "incident_id": incident_id,
                               "recipient_id": recipient, "channel": "email", "event": kind,
                               "reason": None, "occurred_at": at, "created_at": now}

            for chunk in chunks(generate()):
                conn.execute(events.insert(), chunk)
                stored += len(chunk)
            next_recipient += count
    return stored


def backfill_rollup(engine: Any) -> None:
    """The rollup from the stored events: the migration's own statement."""
    minute = "strftime('%Y-%m-%d %H:%M:00.000000', occurred_at)"
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM deliveryeventrollup")
        conn.exec_driver_sql(
            "INSERT INTO deliveryeventrollup (incident_id, channel, event, minute, count) "
            f"SELECT incident_id, channel, event, {minute}, count(*) FROM deliveryevent "
            f"WHERE incident_id IS NOT NULL GROUP BY incident_id, channel, event, {minute}")


def fill_reactions(engine: Any, incidents: list[tuple[int, int]], total: int,
                   rng: random.Random) -> None:
    from crisiscomms.reactions.models import Reaction

    table = Reaction.__table__  # type: ignore[attr-defined]
    now = datetime.now(UTC)

    def generate() -> Iterator[dict[str, Any]]:
        n = 0
        for (incident_id, _), share in zip(incidents, SHARES, strict=True):
            started = START + timedelta(hours=incidents.index((incident_id, _)))
            for _i in range(round(total * share)):
                n += 1
                csat = rng.random() < 0.02
                rating = rng.choice((1, 2, 3, 4, 4, 5, 5, 5)) if csat else None
                sentiment = (("negative" if rating <= 2 else "neutral" if rating == 3
                              else "positive") if rating is not None else
                             rng.choices(("negative", "neutral", "positive"), (55, 30, 15))[0])
                yield {"source": "csat" if csat else rng.choice(("x_mention", "email_reply",
                                                                  "ticket")),
                       "source_id": f"bench-{n}", "incident_id": incident_id,
                       "message_id": None, "delivery_id": None, "recipient_id": None,
                       "channel": "email" if csat else rng.choice(("x", "email", "support")),
                       "locale": rng.choice(("en", "en", "de", "fr", "es", "ja")),
                       "author": f"author-{n}", "author_name": None,
                       "text": "Still down for us. When will it be fixed?", "rating": rating,
                       "language": None, "sentiment": sentiment, "score": None,
                       "needs_human": rng.random() < 0.03, "reasons_json": "[]",
                       "received_at": started + timedelta(seconds=rng.random() * 3 * 3600),
                       "created_at": now}

    with engine.begin() as conn:
        for chunk in chunks(generate()):
            conn.execute(table.insert(), chunk)


def timed(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn`` over ``runs`` calls, in ms."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(samples), 1)


RAW_GROUP_BY = "reach_raw_events_group_by"
"""The reach a page would compute without the rollup: the rollup's baseline."""


def bare_sql(engine: Any, incident_id: int, runs: int) -> dict[str, float]:
    """The aggregates behind the pages, straight through the driver (median ms)."""
    bucket = "CAST(strftime('%s', received_at) AS INTEGER) / 300"
    queries = {
        "reach_rollup": ("SELECT channel, event, sum(count) FROM deliveryeventrollup "
                         "WHERE incident_id = ? GROUP BY channel, event"),
        "reach_over_time_rollup": ("SELECT minute, channel, event, count FROM "
                                   "deliveryeventrollup WHERE incident_id = ?"),
        RAW_GROUP_BY: ("SELECT channel, event, count(*) FROM deliveryevent "
                                      "WHERE incident_id = ? GROUP BY channel, event"),
        "ledger_by_channel_state": ("SELECT channel, state, sum(recipient_count) FROM delivery "
                                    "WHERE incident_id = ? GROUP BY channel, state"),
        "reaction_trend": (f"SELECT {bucket}, coalesce(sentiment, 'unscored'), needs_human, "
                           "count(*) FROM reaction WHERE incident_id = ? "
                           f"GROUP BY {bucket}, coalesce(sentiment, 'unscored'), needs_human"),
        "csat": ("SELECT rating, count(*) FROM reaction WHERE source = 'csat' AND "
                 "incident_id = ? AND rating IS NOT NULL GROUP BY rating"),
    }
    out = {}
    with engine.connect() as conn:
        for name, sql in queries.items():
            out[name] = timed(lambda sql=sql: conn.exec_driver_sql(sql, (incident_id,)).all(),
                              runs)
    return out


def run_pages(runs: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """p50/p95 of steady runs per role and page, and each one's cold run (ms)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from crisiscomms.dashboard.pages import PAGES
    from crisiscomms.dashboard.session import SIGNED_IN_KEY, USER_KEY
    from crisiscomms.identity.identities import Identity
    from crisiscomms.identity.roles import ROLE_PERMISSIONS, Role
    from crisiscomms.identity.users import DashboardUser

    folder = ROOT / "crisiscomms" / "dashboard"
    pages: dict[str, dict[str, float]] = {}
    cold: dict[str, float] = {}
    for page in PAGES:
        for role in Role:
            if page.permission not in ROLE_PERMISSIONS[role]:
                continue
            name = f"{role.value}/{page.url_path}"
            app = AppTest.from_file(str(folder / page.file), default_timeout=120)
            uid = f"bench-{role.value}"
            app.session_state[USER_KEY] = DashboardUser(
                Identity(uid, uid, "dashboard"), frozenset({role}))
            app.session_state[SIGNED_IN_KEY] = time.monotonic()
            st.cache_data.clear()
            t0 = time.perf_counter()
            app.run()
            cold[name] = round((time.perf_counter() - t0) * 1000, 1)
            if app.exception:
                raise SystemExit(f"{name}: {[e.value for e in app.exception]}")
            samples = []
            for _ in range(runs):
                t0 = time.perf_counter()
                app.run()
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            pages[name] = {"p50_ms": round(statistics.median(samples), 1),
                           "p95_ms": round(samples[min(len(samples) - 1,
                                                       int(0.95 * len(samples)))], 1)}
    return pages, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--reactions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20, help="steady runs per role and page")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", action="store_true",
                        help="keep the filled database (its folder is printed to stderr)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # AppTest's bare-mode chatter
    work = workdir()
    try:
        run(args, work)
    finally:
        if args.keep:
            log(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)  # about 400 MB at a million deliveries


def run(args: argparse.Namespace, work: Path) -> None:
    playbooks, templates = content_dirs(work)
    os.environ.update({
        "CRISISCOMMS_MODE": "drill", "CRISISCOMMS_DATA_DIR": str(work / "data"),
        "CRISISCOMMS_DATABASE_URL": f"sqlite:///{work / 'dashboard.db'}",
        "CRISISCOMMS_PLAYBOOKS_DIR": str(playbooks),
        "CRISISCOMMS_TEMPLATES_DIR": str(templates),
    })
    from crisiscomms.core.database import init_db, make_engine
    from crisiscomms.core.settings import Settings

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    incidents = seed_incidents(engine, settings)
    seeded = time.perf_counter()
    events = fill_deliveries(engine, incidents, args.deliveries, settings.email_batch_size, rng)
    filled = time.perf_counter()
    backfill_rollup(engine)
    rolled = time.perf_counter()
    fill_reactions(engine, incidents, args.reactions, rng)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    done = time.perf_counter()
    log(f"fill: {done - t0:.1f} s (incidents through the engine {seeded - t0:.1f} s; "
        f"{args.deliveries:,} deliveries in {args.deliveries // settings.email_batch_size:,} "
        f"ledger rows + {events:,} events {filled - seeded:.1f} s; rollup backfill "
        f"{rolled - filled:.1f} s; {args.reactions:,} reactions + ANALYZE {done - rolled:.1f} s)")

    bare = bare_sql(engine, incidents[-1][0], args.runs)
    pages, cold = run_pages(args.runs)
    for name, ms in cold.items():
        log(f"cold {name}: {ms} ms (steady p50 {pages[name]['p50_ms']} ms)")
    # the figure to set the pages against: what the overview's own aggregates cost bare (the
    # raw-event GROUP BY is the rollup's comparison, not something a page runs)
    page_sql = round(sum(ms for name, ms in bare.items() if name != RAW_GROUP_BY), 1)
    report = {"deliveries": args.deliveries, "reactions": args.reactions, "pages": pages,
              "bare_sql_ms": page_sql, "bare_sql_parts_ms": bare}
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        emit({**report, "pages": json.dumps(pages), "bare_sql_parts_ms": json.dumps(bare)},
             False)


if __name__ == "__main__":
    main()
