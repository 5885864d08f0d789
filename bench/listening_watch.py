"""The listening watcher and the reactions page at scale: how long their SQL takes when an
incident has many reactions.

An incident gets ``--reactions`` reactions spread over ``--hours`` (x and email, five locales,
a third negative, one in fifty flagged), inserted in bulk (not timed). Then, timed:

- ``detect_spikes_ms``: one pass of spike detection (the GROUP BY over the last baseline and
  judged windows, examples for each spike, the Spike rows);
- ``summary_ms``, ``over_time_ms``, ``flagged_ms``: the reactions page's reads
  (``reactions/views.py``);
- ``reply_scan_ms``: one pass of ``answer_reactions`` from an empty cursor: the scan of the
  last ``reply_max_age_minutes`` of reactions for reply cues (none asks: nothing is sent).

``--try-index`` times the same with a covering index (incident_id, received_at, channel,
locale, language, source, sentiment, needs_human) that the schema does NOT have: the figure
to decide whether it is worth its cost on every insert.

    uv run python bench/listening_watch.py [--reactions 200000] [--backend sqlite] [--json]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import content_dirs, database, emit, peak_rss_mb, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reactions", type=int, default=200_000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--try-index", action="store_true",
                        help="add a covering index first (not in the schema)")
    args = parser.parse_args()

    from sqlalchemy import insert
    from sqlmodel import Session

    from crisiscomms.channels.registry import build_channels
    from crisiscomms.core.clock import utcnow
    from crisiscomms.core.database import init_db, make_engine
    from crisiscomms.core.settings import Settings
    from crisiscomms.incident.facts import build_fact_sheet
    from crisiscomms.incident.models import FactSheetVersion, Incident
    from crisiscomms.playbook.listening import SpikePolicy
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.reactions.models import Reaction
    from crisiscomms.reactions.replies import answer_reactions
    from crisiscomms.reactions.spikes import detect_spikes
    from crisiscomms.reactions.views import flagged, over_time, summary

    work = workdir()
    playbooks, templates = content_dirs(work)
    with database(args.backend, work) as url:
        engine = make_engine(url)
        init_db(engine)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=work, database_url=url, playbooks_dir=playbooks,
            templates_dir=templates, mode="drill", sendgrid_api_key="SG.bench-unused",
            x_bearer_token="bench-unused", sendgrid_base_url="http://127.0.0.1:9",
            x_base_url="http://127.0.0.1:9")
        now = utcnow()
        rng = random.Random(11)
        with Session(engine) as session:
            incident = Incident(ref="BENCH-1", playbook="outage", title="Bench", severity="major",
                                drill=True)
            session.add(incident)
            session.commit()
            assert incident.id is not None
            facts = build_fact_sheet(dict(load_playbook("outage", playbooks).drill_facts))
            session.add(FactSheetVersion(incident_id=incident.id, version=1,
                                         facts_json=facts.model_dump_json(),
                                         facts_hash="0" * 64, created_by="bench"))
            session.commit()
            # none asks a reply rule's question: the scan reads and matches, sends nothing
            texts = ["still down after an hour", "is anyone there?", "thanks for the update",
                     "lost my work again", "das nervt wirklich", "また障害ですか"]
            span = args.hours * 3600
            rows: list[dict[str, Any]] = []
            for i in range(args.reactions):
                negative = rng.random() < 0.33
                rows.append({
                    "source": "x_mention" if i % 3 else "email_reply", "source_id": f"b{i}",
                    "incident_id": incident.id, "channel": "x" if i % 3 else "email",
                    "locale": ("en", "es", "fr", "de", "ja")[i % 5], "author": f"@u{i}",
                    "text": texts[i % len(texts)], "reasons_json": "[]",
                    "sentiment": "negative" if negative else "neutral",
                    "score": -0.6 if negative else 0.0, "needs_human": i % 50 == 0,
                    "received_at": now - timedelta(seconds=rng.random() * span),
                    "created_at": now})
                if len(rows) == 5000:
                    session.execute(insert(Reaction), rows)
                    rows.clear()
            if rows:
                session.execute(insert(Reaction), rows)
            session.commit()
            if args.try_index:
                from sqlalchemy import text
                session.execute(text(
                    "CREATE INDEX ix_try ON reaction (incident_id, received_at, channel, locale, "
                    "language, source, sentiment, needs_human)"))
                session.execute(text("ANALYZE"))
                session.commit()

            report: dict[str, Any] = {"backend": args.backend, "reactions": args.reactions,
                                      "hours": args.hours}
            started = time.perf_counter()
            found = detect_spikes(session, incident.id, SpikePolicy())
            report["detect_spikes_ms"] = round((time.perf_counter() - started) * 1000, 1)
            report["spikes"] = len(found)
            for name, fn in (("summary_ms", lambda: summary(session, "BENCH-1")),
                             ("over_time_ms", lambda: over_time(session, "BENCH-1")),
                             ("flagged_ms", lambda: flagged(session, "BENCH-1", limit=100))):
                started = time.perf_counter()
                fn()
                report[name] = round((time.perf_counter() - started) * 1000, 1)
        channels = build_channels(settings)  # imports the providers' SDKs: not timed
        started = time.perf_counter()
        answer_reactions(engine, settings, channels)
        report["reply_scan_ms"] = round((time.perf_counter() - started) * 1000, 1)
        report["peak_rss_mb"] = round(peak_rss_mb(), 1)
        engine.dispose()
    emit(report, args.json)


if __name__ == "__main__":
    main()
