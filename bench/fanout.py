"""Email fan-out throughput: the full path beside the raw ceiling, measured in one run.

Full path: trigger the outage acknowledgement (render), plan the ledger (bulk), publish
through the Prefect flow (claim, read recipients, substitutions, SendGrid Mail Send requests of
1,000 personalizations through the configured transport (``Settings.sendgrid_transport``:
pooled httpx + orjson by default, the SDK with ``sdk``; the report names the one the email
channel really used), several in flight, bulk records) to the SendGrid emulator. Raw ceiling: a
bare httpx client posting the same request bodies our channel built (eight real batches of
1,000 personalizations with their substitutions and unsubscribe headers, addresses rewritten),
prebuilt, to the same emulator with the same number of requests in flight.

Import: the recipients arrive as a customer's CSV through the strict import
(``crisiscomms recipients import``: every line checked, all or nothing, streamed; ``COPY`` on
PostgreSQL) in a separate process: ``import_s``, ``import_rows_per_s``, ``import_peak_rss_mb``
(that process's high-water mark, interpreter and imports included; a large file is read and
checked by a second process: its own in ``import_checker_peak_rss_mb``). ``--import-only`` measures
just the import at each of ``--sizes`` (default 100,000 and 1,000,000: flat memory means
``import_peak_rss_growth_mb`` near zero) beside the unchecked bulk insert of the same rows
(``import_baseline_s``, ``import_ratio`` = baseline / import), in the same run.

Memory: the recipients are imported by a separate process (``import_s``), so the sender's
``peak_rss_mb`` (this process's high-water mark, taken right after the send, before the raw
ceiling and the naive flow) holds only imports, Prefect, the send and its records;
``rss_before_send_mb`` is the resident size just before the clock starts. ``--sizes
100000,1000000`` runs each size in a fresh process and prints them side by side (flat memory:
``peak_rss_mb`` does not grow with the recipient count). The emulators run in a subprocess
(their memory is not counted); Prefect's temporary server is a subprocess too and is started
before the clock starts. ``duplicates`` and ``missing`` compare addresses, not counts: the
emulator's distinct recipients against the consenting recipients in the database.

    uv run python bench/fanout.py --recipients 1000000 [--backend sqlite|postgresql] [--json]
    uv run python bench/fanout.py --sizes 100000,1000000 --naive 0 [--json]
    uv run python bench/fanout.py --import-only [--sizes 100000,1000000] [--backend ...]
                                       [--shuffled] --json
    uv run python bench/fanout.py --channel sms --recipients 100000 [--json]

``--channel sms``: the same measure for SMS. The recipients get mobile numbers; the outage
acknowledgement (urgent: no quiet hours) is published on SMS alone (a copy of the playbook whose
stage names only ``sms``), one ledger row and one Twilio Messages request per recipient
through the ``twilio`` SDK, to the Twilio emulator; ``CRISISCOMMS_SINGLE_ROWS_PER_TASK`` is
``--sms-rows-per-task`` (a row is one recipient, not 1,000). Raw ceiling: a bare httpx client
posting the same form bodies (``To``, ``From``, ``Body``: the approved text, numbers rewritten)
to the same emulator with the same number of requests in flight. ``per_s`` is recipients (one
message each) per second; ``segments`` what the emulator billed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ROOT,
    SG_KEY,
    EmulatorProcess,
    base_env,
    content_note,
    database,
    emit,
    peak_rss_mb,
    set_env,
    workdir,
)


def real_bodies(engine: Any, settings: Any, incident_id: int, count: int = 8) -> list[bytes]:
    """The Mail Send bodies our email channel builds for the first ``count`` ledger rows of the
    incident (the same recipients' substitutions, unsubscribe headers, parts and custom args),
    with each address and key rewritten so the replay never repeats the real send."""
    import orjson
    from sqlmodel import Session, col, select

    from crisiscomms.channels.registry import build_channels
    from crisiscomms.delivery.ledger import decode_ids
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.delivery.sender import _batch, _context, _recipients

    channels = build_channels(settings)
    channel: Any = channels["email"]
    out: list[bytes] = []
    with Session(engine) as session:
        rows = session.exec(select(Delivery).where(
            col(Delivery.incident_id) == incident_id, col(Delivery.channel) == "email")
            .order_by(col(Delivery.id)).limit(count)).all()
        for i, row in enumerate(rows):
            ctx = _context(session, row.message_id, settings.playbooks_dir, channels=channels)
            recipients, _ = _recipients(
                session.connection(), decode_ids(row.recipient_ids), ctx.fields,
                tags=ctx.time_tags, locale=ctx.message.locale,
                unsubscribe=channel.unsubscribe_link)
            body = channel.build_body(_batch(ctx, f"raw-{i}", row.batch_no, recipients))
            for j, personalization in enumerate(body["personalizations"]):
                personalization["to"] = [{"email": f"raw{i}-{j:04d}@drill.example.com"}]
            out.append(orjson.dumps(body))
    return out


def raw_ceiling(url: str, recipients: int, in_flight: int, bodies: list[bytes]) -> float:
    """Recipients per second a bare HTTP client gets through the emulator, posting the same
    request bodies our channel builds (``real_bodies``), prebuilt, round robin."""
    local = threading.local()
    headers = {"Authorization": f"Bearer {SG_KEY}", "Content-Type": "application/json"}

    def post(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
        response = client.post(f"{url}/v3/mail/send", content=bodies[i % len(bodies)],
                               headers=headers)
        if response.status_code != 202:
            raise SystemExit(f"raw ceiling: emulator answered {response.status_code}")

    per_request = len(json.loads(bodies[0])["personalizations"])
    requests = -(-recipients // per_request)
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(post, range(requests)))
    return recipients / (time.perf_counter() - started)


def sms_raw_ceiling(url: str, recipients: int, in_flight: int, text: str) -> float:
    """Messages per second a bare HTTP client gets through the Twilio emulator: the same form
    body our channel sends (the approved text), prebuilt, numbers rewritten."""
    from urllib.parse import urlencode

    from _common import SMS_FROM, TWILIO_SID, TWILIO_TOKEN

    local = threading.local()
    path = f"{url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    bodies = [urlencode({"To": f"+1556{i:07d}", "From": SMS_FROM, "Body": text}).encode()
              for i in range(min(recipients, 1000))]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def post(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60, auth=(TWILIO_SID, TWILIO_TOKEN))
        response = client.post(path, content=bodies[i % len(bodies)], headers=headers)
        if response.status_code != 201:
            raise SystemExit(f"raw ceiling: emulator answered {response.status_code}")

    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(post, range(recipients)))
    return recipients / (time.perf_counter() - started)


def sms_only_playbooks(work: Path, playbooks: Path) -> Path:
    """A copy of the playbooks whose outage acknowledgement publishes on SMS alone."""
    import yaml

    folder = work / "sms-playbooks"
    folder.mkdir(parents=True, exist_ok=True)
    for source in playbooks.glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.stem == "outage":
            data = yaml.safe_load(text)
            channels = data["stages"][0]["channels"]
            assert "sms" in channels, "the outage acknowledgement does not publish on SMS"
            old = "channels: [" + ", ".join(channels) + "]"
            assert text.count(old) >= 1
            text = text.replace(old, "channels: [sms]", 1)
        (folder / source.name).write_text(text, encoding="utf-8")
    return folder


def naive(count: int) -> dict[str, Any]:
    """One Prefect task per recipient (the shape to avoid), on ``count`` recipients."""
    from prefect import flow, task
    from prefect.cache_policies import NONE
    from prefect.task_runners import ThreadPoolTaskRunner
    from sqlmodel import Session, select

    from crisiscomms.audience.models import Recipient
    from crisiscomms.channels.registry import build_channels
    from crisiscomms.core.database import make_engine
    from crisiscomms.core.settings import Settings
    from crisiscomms.delivery.contract import OutboundBatch, OutboundRecipient, RenderedMessage
    from crisiscomms.incident.facts import FactSheet
    from crisiscomms.incident.models import Incident, Message
    from crisiscomms.incident.service import facts_of, latest_facts

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    channel = build_channels(settings)["email"]
    with Session(engine) as s:
        incident = s.exec(select(Incident)).first()
        assert incident is not None and incident.id is not None
        facts: FactSheet = facts_of(latest_facts(s, incident.id))
        message = s.exec(select(Message).where(Message.channel == "email")).first()
        assert message is not None
        rendered = RenderedMessage(playbook="outage", stage=message.stage, channel="email",
                                   locale=message.locale, parts=json.loads(message.parts_json),
                                   content_hash=message.content_hash)

    @task(cache_policy=NONE)
    def send_one(rid: int) -> bool:
        with Session(engine) as s:
            r = s.get(Recipient, rid)
            assert r is not None
        batch = OutboundBatch(key=f"naive-{rid}", batch_no=rid, facts=facts,
                              incident_status="investigating", message=rendered,
                              recipients=[OutboundRecipient(rid, r.email, {
                                  "%first_name%": r.name or "there",
                                  "%first_name.html%": r.name or "there"})])
        return channel.send(batch).outcome == "sent"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
    def naive_fanout(n: int) -> int:
        futures = [send_one.submit(i) for i in range(1, n + 1)]
        return sum(1 for f in futures if f.result())

    started = time.perf_counter()
    sent = naive_fanout(count)
    elapsed = time.perf_counter() - started
    return {"recipients": count, "sent": sent, "elapsed_s": round(elapsed, 2),
            "per_s": round(count / elapsed, 1)}


_SEED = """
import json, sys, time
from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.testing.audiences import drill_recipients
engine = make_engine(sys.argv[1])
init_db(engine)
started = time.perf_counter()
with session_scope(engine) as session:
    insert_recipients(session, drill_recipients(int(sys.argv[2]),
                                                phones=sys.argv[3:] == ["phones"]))
print(json.dumps({"seconds": time.perf_counter() - started}))
engine.dispose()
"""

_IMPORT = """
import json, resource, sys, time
from pathlib import Path
from crisiscomms.audience.importer import import_csv
from crisiscomms.core.database import init_db, make_engine
engine = make_engine(sys.argv[1])
init_db(engine)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
report = import_csv(engine, Path(sys.argv[2]))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "imported": report.imported,
                  "rejected": report.rejected[:5], "rss_before_import_mb": round(before, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                       / 1024, 1),
                  "checker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN)
                                               .ru_maxrss / 1024, 1)}))
engine.dispose()
"""


_SHUFFLED = """
import random, sys
from pathlib import Path
sys.path.insert(0, "bench")
from fanout import write_recipients_csv
path, count = Path(sys.argv[1]), int(sys.argv[2])
write_recipients_csv(path, count)
lines = path.read_bytes().splitlines(keepends=True)
rest = lines[1:]
random.Random(14).shuffle(rest)
path.write_bytes(b"".join([lines[0], *rest]))
"""


def write_recipients_csv(path: Path, count: int, *, shuffled: bool = False) -> None:
    """The drill audience (the same rows the unchecked seed inserts) as a CSV a customer
    would import; ``shuffled``: in a random (seeded) order, as an export from another system
    usually is, rather than sorted by address (shuffled by a child process, so that this
    one's peak memory, which the import's child would inherit in its own peak, stays small)."""
    import csv

    from crisiscomms.testing.audiences import drill_recipients

    if shuffled:
        subprocess.run([sys.executable, "-c", _SHUFFLED, str(path), str(count)], check=True,
                       cwd=ROOT)
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "locale", "time_zone", "plan"])
        for row in drill_recipients(count):
            writer.writerow([row["email"], row["name"] or "", row["locale"], row["time_zone"],
                             row["plan"]])


def _child(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def import_in_subprocess(db_url: str, csv_path: Path, count: int) -> dict[str, Any]:
    """``crisiscomms recipients import`` of ``count`` recipients (strict: every line checked,
    all or nothing) in a separate process, its own time and peak RSS."""
    result = _child(_IMPORT, db_url, str(csv_path))
    if result["imported"] != count:
        raise SystemExit(f"import: {result['imported']} of {count} imported: "
                         f"{result['rejected']}")
    return {"import_s": round(result["seconds"], 2),
            "import_rows_per_s": round(count / result["seconds"]),
            "import_peak_rss_mb": result["peak_rss_mb"],
            # the second process that reads and checks a large file (0: none was started)
            "import_checker_peak_rss_mb": result["checker_peak_rss_mb"],
            "import_rss_before_mb": result["rss_before_import_mb"]}


def import_baseline(db_url: str, count: int) -> float:
    """Seconds the unchecked bulk insert (``insert_recipients``, what this bench seeded with
    before the import was streamed) takes for the same rows, in its own process."""
    return float(_child(_SEED, db_url, str(count))["seconds"])


def import_figures(backend: str, work: Path, count: int, *, baseline: bool,
                   shuffled: bool = False) -> dict[str, Any]:
    """The import measured on a fresh database (and the baseline on another)."""
    csv_path = work / f"recipients-{count}.csv"
    write_recipients_csv(csv_path, count, shuffled=shuffled)
    with database(backend, work / f"import-{count}") as db_url:
        figures = import_in_subprocess(db_url, csv_path, count)
    if baseline:
        with database(backend, work / f"baseline-{count}") as db_url:
            seconds = import_baseline(db_url, count)
        figures["import_baseline_s"] = round(seconds, 2)
        figures["import_ratio"] = round(seconds / figures["import_s"], 2)
    csv_path.unlink()
    return figures


def imports_only(args: argparse.Namespace) -> None:
    """``--import-only``: the strict CSV import at each size (fresh processes, fresh databases),
    beside the unchecked bulk insert of the same rows; peak RSS side by side."""
    work = workdir()
    runs = []
    for size in (int(s) for s in (args.sizes or "100000,1000000").split(",") if s.strip()):
        runs.append({"recipients": size, **import_figures(args.backend, work, size,
                                                          shuffled=args.shuffled,
                                                          baseline=True)})
    report = {"backend": args.backend, "shuffled": args.shuffled, "runs": runs,
              "import_peak_rss_growth_mb": round(runs[-1]["import_peak_rss_mb"]
                                                 - runs[0]["import_peak_rss_mb"], 1),
              "baseline": "insert_recipients of the same rows, unchecked (the old seed)",
              "import_ratio": "baseline seconds / import seconds (above 1: faster)"}
    emit(report, args.json)


def timed_acknowledgement(engine: Any, settings: Any, incident_ref: str
                          ) -> tuple[Any, dict[str, Any], float, float, float, float]:
    """Prefect's temporary server started first (off the clock), then the outage
    acknowledgement triggered and published in this process; (bundle, publish result, render
    seconds, seconds in all, RSS before the clock in MB, peak RSS in MB)."""
    from prefect import flow

    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.flows.run_playbook import run_stage
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook

    @flow
    def warm() -> None:
        return None

    warm()
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    rss_before = current_rss_mb()
    started = time.perf_counter()
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts={**facts, "incident_ref": incident_ref},
                     actor=system_identity("bench"))
    render_s = time.perf_counter() - started
    result = run_stage(bundle.incident_ref, bundle.stage)
    return (bundle, result, render_s, time.perf_counter() - started, rss_before,
            peak_rss_mb())


def current_rss_mb() -> float:
    """Resident set size of this process now (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def sizes(args: argparse.Namespace) -> None:
    """Each size in a fresh process; the reports side by side."""
    reports = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        cmd = [sys.executable, __file__, "--recipients", str(size), "--backend", args.backend,
               "--max-workers", str(args.max_workers), "--send-concurrency",
               str(args.send_concurrency), "--naive", str(args.naive), "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        reports.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("recipients", "elapsed_s", "per_s", "ratio", "peak_rss_mb", "rss_before_send_mb",
            "duplicates", "missing", "import_s", "import_rows_per_s", "import_peak_rss_mb")
    summary = {"backend": args.backend, "runs": [{k: r[k] for k in keys} for r in reports],
               "peak_rss_growth_mb": round(reports[-1]["peak_rss_mb"]
                                           - reports[0]["peak_rss_mb"], 1) if reports else 0}
    if args.json:
        print(json.dumps({**summary, "reports": reports}))
    else:
        emit(summary, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-workers", type=int, default=2, help="email tasks in parallel")
    parser.add_argument("--send-concurrency", type=int, default=3,
                        help="requests in flight per task")
    parser.add_argument("--naive", type=int, default=2000,
                        help="recipients for the one-task-per-recipient flow (0: skip)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated recipient counts, each run in a fresh process")
    parser.add_argument("--import-only", action="store_true",
                        help="only the recipient import, at each of --sizes (default "
                             "100000,1000000), beside the unchecked bulk insert")
    parser.add_argument("--channel", choices=("email", "sms"), default="email")
    parser.add_argument("--sms-rows-per-task", type=int, default=5000,
                        help="SMS ledger rows (one recipient each) per publish task")
    parser.add_argument("--shuffled", action="store_true",
                        help="--import-only: the file's lines in a random order, not by address")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.import_only:
        imports_only(args)
        return
    if args.channel == "sms":
        sms_main(args)
        return
    if args.sizes:
        sizes(args)
        return

    work = workdir()
    in_flight = args.max_workers * args.send_concurrency
    with EmulatorProcess() as emulators, database(args.backend, work) as db_url:
        set_env(base_env(work, db_url, emulators))
        os.environ.update({"CRISISCOMMS_MAX_WORKERS": str(args.max_workers),
                           "CRISISCOMMS_SEND_CONCURRENCY": str(args.send_concurrency),
                           "CRISISCOMMS_BATCHES_PER_TASK": "50"})
        from sqlalchemy import select
        from sqlmodel import col

        from crisiscomms.audience.models import Recipient
        from crisiscomms.channels.registry import build_channels
        from crisiscomms.core.database import init_db, make_engine, session_scope
        from crisiscomms.core.settings import Settings
        from crisiscomms.delivery.ledger import channel_counts

        settings = Settings()
        csv_path = work / "recipients.csv"
        write_recipients_csv(csv_path, args.recipients)
        imported = import_in_subprocess(db_url, csv_path, args.recipients)
        csv_path.unlink()
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        transport = getattr(build_channels(settings)["email"], "transport", "sdk")

        bundle, result, render_s, elapsed, rss_before, rss = timed_acknowledgement(
            engine, settings, "FANOUT-1")
        stats = emulators.stats()
        with session_scope(engine) as session:
            counts = channel_counts(session, bundle.incident_id)["email"]
            expected = {str(e).lower() for e in session.execute(
                select(col(Recipient.email)).where(col(Recipient.consent))).scalars()}
        seen = emulators.http.get(f"{emulators.sendgrid_url}/_emulator/addresses").json()
        received = set(seen["addresses"])
        duplicates = len(seen["repeated"])
        missing = len(expected - received)
        unexpected = len(received - expected)
        del expected, received, seen
        emulators.reset()
        bodies = real_bodies(engine, settings, bundle.incident_id)
        ceiling = raw_ceiling(emulators.sendgrid_url, args.recipients, in_flight, bodies)
        del bodies
        emulators.reset()
        naive_report = naive(args.naive) if args.naive else None
        per_s = args.recipients / elapsed
        report = {
            "recipients": args.recipients,
            "backend": args.backend,
            "elapsed_s": round(elapsed, 2),
            "per_s": round(per_s, 1),
            "raw_ceiling_per_s": round(ceiling, 1),
            "ratio": round(per_s / ceiling, 3),
            "peak_rss_mb": rss,
            "rss_before_send_mb": rss_before,
            "duplicates": duplicates,
            "missing": missing,
            "unexpected": unexpected,
            "duplicate_key_pairs": int(stats["duplicates"]),
            "emulator_recipient_messages": int(stats["recipients"]),
            "email_transport": transport,
            "ledger_sent": counts["sent"],
            "ledger_failed": counts["failed"],
            "errors": result["errors"][:5],
            **imported,
            "render_s": round(render_s, 2),
            "email_lane_s": result["lane_seconds"].get("email"),
            "requests_in_flight": in_flight,
            "emulator": "subprocess (its memory is not in peak_rss_mb)",
            "import": "crisiscomms recipients import of a CSV, strict, in a subprocess (its "
                      "memory is import_peak_rss_mb, not in peak_rss_mb)",
            "content": content_note(),
            "naive_one_task_per_recipient": naive_report,
        }
        engine.dispose()
    emit(report, args.json)


def sms_main(args: argparse.Namespace) -> None:
    """``--channel sms``: SMS fan-out beside its raw ceiling, measured in one run."""
    work = workdir()
    in_flight = args.max_workers * args.send_concurrency
    with EmulatorProcess() as emulators, database(args.backend, work) as db_url:
        env = base_env(work, db_url, emulators)
        env["CRISISCOMMS_PLAYBOOKS_DIR"] = str(
            sms_only_playbooks(work, Path(env["CRISISCOMMS_PLAYBOOKS_DIR"])))
        set_env(env)
        os.environ.update({"CRISISCOMMS_MAX_WORKERS": str(args.max_workers),
                           "CRISISCOMMS_SEND_CONCURRENCY": str(args.send_concurrency),
                           "CRISISCOMMS_SINGLE_ROWS_PER_TASK": str(args.sms_rows_per_task)})
        from sqlalchemy import select
        from sqlmodel import col

        from crisiscomms.audience.models import Recipient
        from crisiscomms.core.database import init_db, make_engine, session_scope
        from crisiscomms.core.settings import Settings
        from crisiscomms.delivery.ledger import channel_counts
        from crisiscomms.incident.models import Message

        settings = Settings()
        started = time.perf_counter()
        # the drill's +1 555 numbers reach nobody, and phonenumbers rightly refuses them at
        # import: these recipients are seeded unchecked, in their own process
        _child(_SEED, db_url, str(args.recipients), "phones")
        import_s = time.perf_counter() - started
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)

        bundle, result, render_s, elapsed, rss_before, rss = timed_acknowledgement(
            engine, settings, "FANOUT-SMS-1")
        stats = emulators.stats("twilio")
        with session_scope(engine) as session:
            counts = channel_counts(session, bundle.incident_id).get("sms", {})
            expected = {str(p) for p in session.execute(
                select(col(Recipient.phone)).where(col(Recipient.consent),
                                                   col(Recipient.phone).is_not(None))).scalars()}
            text = json.loads(session.execute(
                select(col(Message.parts_json)).where(col(Message.channel) == "sms",
                                                      col(Message.locale) == "en")
            ).scalars().first() or "{}").get("text", "")
        seen = emulators.http.get(f"{emulators.twilio_url}/_emulator/addresses").json()
        received = set(seen["addresses"])
        duplicates, missing = len(seen["repeated"]), len(expected - received)
        unexpected = len(received - expected)
        del expected, received, seen
        emulators.reset()
        ceiling = sms_raw_ceiling(emulators.twilio_url, args.recipients, in_flight, text)
        emulators.reset()
        per_s = args.recipients / elapsed
        report = {
            "channel": "sms",
            "recipients": args.recipients,
            "backend": args.backend,
            "elapsed_s": round(elapsed, 2),
            "per_s": round(per_s, 1),
            "raw_ceiling_per_s": round(ceiling, 1),
            "ratio": round(per_s / ceiling, 3),
            "peak_rss_mb": rss,
            "rss_before_send_mb": rss_before,
            "duplicates": duplicates,
            "missing": missing,
            "unexpected": unexpected,
            "emulator_messages": int(stats["accepted_messages"]),
            "segments": int(stats.get("segments", 0)),
            "ledger_sent": counts.get("sent", 0),
            "ledger_failed": counts.get("failed", 0),
            "errors": result["errors"][:5],
            "import_s": round(import_s, 2),
            "render_s": round(render_s, 2),
            "sms_lane_s": result["lane_seconds"].get("sms"),
            "requests_in_flight": in_flight,
            "rows_per_task": args.sms_rows_per_task,
            "emulator": "subprocess (its memory is not in peak_rss_mb)",
            "content": content_note(),
        }
        engine.dispose()
    emit(report, args.json)


if __name__ == "__main__":
    main()
