"""Reactions per second through the listening receivers, triage and storage included.

A real ``crisiscomms listen`` app (uvicorn, in its own process) on a real SQLite file, seeded
with one published incident (``--recipients`` recipients in ledger batches of 1,000). The
client (this process, ``--concurrency`` threads on keep-alive connections) then sends what the
providers send:

- ``events``: SendGrid Event Webhook POSTs of ``--events-per-post`` events each (processed,
  delivered, open; our ``custom_args`` link each to its batch and recipient), ECDSA-signed by
  the emulator's key, as SendGrid batches them; stored once each in ``delivery_event``;
- ``replies``: Inbound Parse POSTs, one reply each (SendGrid posts one email per request),
  basic auth, multipart, linked by the Reply-To batch key, triaged and stored as reactions;
- ``tickets``: Zendesk webhooks, one ticket comment each, HMAC-signed.

Printed: ``events_per_s``, ``replies_per_s``, ``tickets_per_s`` (each phase on its own),
``reactions_per_s`` (everything received over the wall time of all phases: the rate of a
mixed stream in these proportions; the defaults are a crisis's: two to three events per email
sent, a reply from about one recipient in two hundred, fewer tickets), ``p99_ms`` (per
request, all phases), ``http_floor_per_s`` (``GET /healthz`` with the same client and
concurrency: what one request costs on this machine before any work, the ceiling of the
one-reaction-per-request sources) and the rows found in the database afterwards (every one
must be there exactly once); then ``score_texts_per_s`` (``reactions score``'s engine,
``Triager.score`` in batches of 1,000 with the workspace's cue lists, on the drill crowd's
texts in five languages) beside ``vader_texts_per_s`` (bare vaderSentiment on the same texts,
same run; null without the ``train`` group) and their ratio ``score_vs_vader``.

    uv run --group train python bench/reactions.py [--events 200000] [--replies 1000]
        [--tickets 300] [--score-texts 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit, workdir

from crisiscomms.reactions.signatures import hmac_signature
from crisiscomms.testing.emulators.sendgrid_events import EventSigner, inbound_reply

PARSE_USER, PARSE_PASSWORD = "bench-parse", "bench-parse-password"
ZENDESK_SECRET = "bench-zendesk-secret"
REPLY_DOMAIN = "reply.bench.example"
TEXTS = ("Still down for us, three hours now. When will it be fixed?",
         "Thanks for the quick update!", "Our lawyer will hear about this.",
         "Is my data safe? Nobody is answering the phone.",
         "Funktioniert wieder, danke.", "まだ繋がりません。いつ直りますか？")

_SERVER = """
import sys, uvicorn
from crisiscomms.api.listen import create_app
from crisiscomms.core.settings import Settings
uvicorn.run(create_app(Settings()), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(db_url: str, recipients: int) -> list[tuple[str, list[int]]]:
    """One incident, one email message, ``recipients`` recipients in batches of 1,000: the
    (key, recipient ids) of each batch."""
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.delivery.ledger import encode_ids
    from crisiscomms.delivery.models import Delivery, DeliveryState
    from crisiscomms.incident.models import Incident, Message
    from crisiscomms.testing.audiences import drill_recipients

    engine = make_engine(db_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(recipients, locales=("en", "de", "ja")))
    batches: list[tuple[str, list[int]]] = []
    with session_scope(engine) as session:
        incident = Incident(ref="BENCH-REACT-1", playbook="outage", title="bench",
                            severity="major")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        message = Message(incident_id=incident.id, stage="acknowledge", facts_version=1,
                          channel="email", locale="en", parts_json="{}", content_hash="h",
                          template_hashes_json="{}")
        session.add(message)
        session.flush()
        assert message.id is not None
        for batch_no, start in enumerate(range(1, recipients + 1, 1000)):
            ids = list(range(start, min(start + 1000, recipients + 1)))
            key = f"{batch_no:040x}"
            session.add(Delivery(key=key, incident_id=incident.id, message_id=message.id,
                                 channel="email", locale="en", batch_no=batch_no,
                                 recipient_ids=encode_ids(ids), recipient_count=len(ids),
                                 state=DeliveryState.sent, provider_id=f"BENCHMSG{batch_no}"))
            batches.append((key, ids))
    engine.dispose()
    return batches


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], cwd=ROOT,
                            env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the listening app did not start")


def run_phase(requests: list[tuple[str, bytes, dict[str, str]]], base: str,
              concurrency: int, latencies: list[float]) -> float:
    """Send every request (each must answer 200; an empty body: a GET); the phase's wall
    time in seconds."""
    local = threading.local()
    lock = threading.Lock()

    def send(item: tuple[str, bytes, dict[str, str]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=120)
        path, body, headers = item
        started = time.perf_counter()
        answer = (client.post(path, content=body, headers=headers) if body
                  else client.get(path))
        took = time.perf_counter() - started
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}: {answer.text[:200]}")
        with lock:
            latencies.append(took)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, requests))
    return time.perf_counter() - started


def event_requests(batches: list[tuple[str, list[int]]], total: int, per_post: int,
                   signer: EventSigner) -> list[tuple[str, bytes, dict[str, str]]]:
    kinds = ("processed", "delivered", "open")
    events: list[dict[str, Any]] = []
    now = int(time.time())
    i = 0
    while len(events) < total:
        key, ids = batches[i % len(batches)]
        rid = ids[(i // len(batches)) % len(ids)]
        events.append({"email": f"subscriber{rid:07d}@drill.example.com", "timestamp": now,
                       "event": kinds[i % 3], "sg_event_id": f"bench-{i}",
                       "sg_message_id": f"BENCHMSG{i % len(batches)}.f-{rid}",
                       "crisiscomms_key": key, "crisiscomms_recipient": str(rid)})
        i += 1
    out = []
    for start in range(0, len(events), per_post):
        body = json.dumps(events[start:start + per_post], separators=(",", ":")).encode()
        body += b"\r\n"
        out.append(("/v1/sendgrid/events", body, signer.headers(body)))
    return out


def reply_requests(batches: list[tuple[str, list[int]]],
                   total: int) -> list[tuple[str, bytes, dict[str, str]]]:
    out = []
    for i in range(total):
        key, ids = batches[i % len(batches)]
        rid = ids[(i // len(batches)) % len(ids)]
        body, headers = inbound_reply(
            from_address=f"subscriber{rid:07d}@drill.example.com",
            to_address=f"replies+{key}@{REPLY_DOMAIN}", text=TEXTS[i % len(TEXTS)] +
            f"\n\nOn Mon, 23 Nov 2026 at 10:12, Status <s@example.com> wrote:\n> update {i}",
            message_id=f"<bench-reply-{i}@crowd.example>", user=PARSE_USER,
            password=PARSE_PASSWORD)
        out.append(("/v1/sendgrid/inbound", body, headers))
    return out


def ticket_requests(total: int) -> list[tuple[str, bytes, dict[str, str]]]:
    out = []
    stamp = str(int(time.time()))
    for i in range(total):
        body = json.dumps({"ticket": {
            "id": 10_000 + i, "subject": f"BENCH-REACT-1 ticket {i}",
            "requester": {"email": f"customer{i}@tickets.example"},
            "latest_comment": {"id": i, "body": TEXTS[i % len(TEXTS)]}}}).encode()
        out.append(("/v1/tickets/zendesk", body, {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature": hmac_signature(ZENDESK_SECRET, stamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp}))
    return out


def count_rows(db_url: str) -> dict[str, int]:
    from sqlalchemy import func, select
    from sqlmodel import Session, col

    from crisiscomms.core.database import make_engine
    from crisiscomms.delivery.models import DeliveryEvent
    from crisiscomms.reactions.models import Reaction

    engine = make_engine(db_url)
    with Session(engine) as s:
        events = s.execute(select(func.count()).select_from(DeliveryEvent)).scalar_one()
        reactions = dict(s.execute(select(col(Reaction.source), func.count())
                                   .group_by(col(Reaction.source))).all())
        linked = s.execute(select(func.count()).select_from(Reaction)
                           .where(col(Reaction.message_id).is_not(None))).scalar_one()
    engine.dispose()
    return {"stored_events": int(events),
            "stored_replies": int(reactions.get("email_reply", 0)),
            "stored_tickets": int(reactions.get("ticket", 0)), "replies_linked": int(linked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--events-per-post", type=int, default=1000)
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--score-texts", type=int, default=20_000,
                        help="Texts for the scoring rate (reactions score vs vaderSentiment)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = workdir()
    db_url = f"sqlite:///{work / 'crisiscomms.db'}"
    batches = seed(db_url, args.recipients)
    signer = EventSigner()
    env = {"CRISISCOMMS_DATA_DIR": str(work / "data"), "CRISISCOMMS_DATABASE_URL": db_url,
           "CRISISCOMMS_PLAYBOOKS_DIR": str(ROOT / "playbooks"),
           "CRISISCOMMS_TEMPLATES_DIR": str(ROOT / "templates"),
           "CRISISCOMMS_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key,
           "CRISISCOMMS_INBOUND_PARSE_USER": PARSE_USER,
           "CRISISCOMMS_INBOUND_PARSE_PASSWORD": PARSE_PASSWORD,
           "CRISISCOMMS_REPLY_DOMAIN": REPLY_DOMAIN,
           "CRISISCOMMS_ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
           "CRISISCOMMS_WEBHOOK_MAX_AGE_S": "3600"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    phases: list[tuple[str, int, Callable[[], list[tuple[str, bytes, dict[str, str]]]]]] = [
        ("events", args.events, lambda: event_requests(batches, args.events,
                                                       args.events_per_post, signer)),
        ("replies", args.replies, lambda: reply_requests(batches, args.replies)),
        ("tickets", args.tickets, lambda: ticket_requests(args.tickets)),
    ]
    server = start_server(port, env)
    latencies: list[float] = []
    report: dict[str, Any] = {}
    wall = 0.0
    try:
        floor = run_phase([("/healthz", b"", {})] * 1000, base, args.concurrency, [])
        report["http_floor_per_s"] = round(1000 / floor)
        for name, count, build in phases:
            requests = build()  # built (and signed) before the clock starts
            took = run_phase(requests, base, args.concurrency, latencies)
            wall += took
            report[f"{name}_per_s"] = round(count / took) if took else 0
            report[f"{name}_requests"] = len(requests)
    finally:
        server.terminate()
        server.wait(timeout=10)
    latencies.sort()
    total = args.events + args.replies + args.tickets
    report = {"reactions_per_s": round(total / wall) if wall else 0,
              "events_per_s": report.pop("events_per_s"),
              "replies_per_s": report.pop("replies_per_s"), **report,
              "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1)
              if latencies else 0,
              "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else 0,
              "reactions": total, "concurrency": args.concurrency,
              "cpus": os.cpu_count(), **count_rows(db_url), **scoring(args.score_texts)}
    emit(report, args.json)


def crowd_texts(count: int) -> list[str]:
    """``count`` customer texts in five languages: the drill crowd's, placeholders filled."""
    import random

    import yaml

    from crisiscomms.testing.crowd import TEXTS_FILE

    data = yaml.safe_load(TEXTS_FILE.read_text(encoding="utf-8"))["texts"]
    pool = [t for kinds in data.values() for texts in kinds.values() for t in texts]
    rng = random.Random(0)
    return [rng.choice(pool).format(hours=rng.randint(2, 9), minutes=40, days=3,
                                    ref="INC-2041") for _ in range(count)]


def scoring(count: int) -> dict[str, Any]:
    """``reactions score``'s rate (``Triager.score`` in batches of 1,000, the workspace's cue
    lists) beside bare vaderSentiment on the same texts, in this run (vaderSentiment comes with
    the ``train`` group: without it, its figure is null)."""
    from bench.triage import score_rate
    from crisiscomms.core.settings import Settings
    from crisiscomms.reactions.triage.workspace import workspace_triager

    texts = crowd_texts(count)
    settings = Settings(playbooks_dir=ROOT / "playbooks", _env_file=None)  # type: ignore[call-arg]
    ours = score_rate(texts, triager=workspace_triager(settings))
    try:
        from bench.triage import vader_labels

        _, vader = vader_labels(texts)
    except ImportError:
        vader = None
    return {"score_texts_per_s": round(ours),
            "vader_texts_per_s": None if vader is None else round(vader),
            "score_vs_vader": None if vader is None else round(ours / vader, 2)}


if __name__ == "__main__":
    main()
