"""The listening receivers against real servers: the FastAPI app under uvicorn on loopback, the
SendGrid emulator publishing real emails and POSTing its signed Event Webhook batches, Inbound
Parse replies, Zendesk/Freshdesk tickets and CSAT ratings, into a real SQLite database."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.api.headers import inline_style_hashes
from crisiscomms.audience.models import Recipient
from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import decode_ids, pending_ids
from crisiscomms.delivery.models import Delivery, DeliveryEvent, DeliveryState
from crisiscomms.delivery.sender import publish_deliveries
from crisiscomms.identity.identities import Identity, system_identity
from crisiscomms.incident.models import Message
from crisiscomms.incident.service import StageBundle, approve, plan_bundle, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions import signatures as sig
from crisiscomms.reactions.models import Reaction
from crisiscomms.reactions.sources import csat
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.audiences import drill_recipients
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, start_emulators
from crisiscomms.testing.emulators.sendgrid_events import EventPlan, inbound_reply

pytestmark = pytest.mark.integration
SG_KEY = "SG.listen-test-key"
X_TOKEN = "x-listen-token"
PARSE_USER, PARSE_PASSWORD = "parse", "parse-pass-7d1e"
ZENDESK_SECRET, FRESHDESK_SECRET = "zendesk-secret-91f2", "freshdesk-secret-0ab3"
CSAT_SECRET = "csat-secret-5c8e4f2a"
REPLY_DOMAIN = "reply.example.com"
MAX_BODY = 1_048_576
RECIPIENTS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def emus() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SG_KEY, x_token=X_TOKEN) as pair:
        yield pair


@dataclass
class Listening:
    base: str
    settings: Settings
    engine: Engine
    emulators: EmulatorPair

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.base + path, content=content, headers=headers, timeout=10)

    def count(self, model: Any) -> int:
        with Session(self.engine) as s:
            return int(s.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def listening(tmp_path: Path, emus: EmulatorPair,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Listening]:
    emus.reset()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **workspace_environment(tmp_path / "data", emus, SG_KEY, X_TOKEN,
                                database_url=f"sqlite:///{tmp_path / 'listen.db'}"),
        "CRISISCOMMS_HTTP_TIMEOUT_S": "2",
        "CRISISCOMMS_EMAIL_BATCH_SIZE": "50",
        "CRISISCOMMS_SENDGRID_WEBHOOK_PUBLIC_KEY": emus.sendgrid.webhook_public_key,
        "CRISISCOMMS_INBOUND_PARSE_USER": PARSE_USER,
        "CRISISCOMMS_INBOUND_PARSE_PASSWORD": PARSE_PASSWORD,
        "CRISISCOMMS_REPLY_DOMAIN": REPLY_DOMAIN,
        "CRISISCOMMS_ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
        "CRISISCOMMS_FRESHDESK_WEBHOOK_SECRET": FRESHDESK_SECRET,
        "CRISISCOMMS_CSAT_SECRET": CSAT_SECRET,
        "CRISISCOMMS_LISTEN_URL": base,
        "CRISISCOMMS_LISTEN_MAX_BODY_BYTES": str(MAX_BODY),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(RECIPIENTS, locales=("en", "de")))
    from crisiscomms.api.listen import create_app

    with serve_app(create_app(settings), port, name="listen"):
        yield Listening(base, settings, engine, emus)
        emus.sendgrid.set_event_webhook(None)
    engine.dispose()


def publish_email(ls: Listening, bundle: StageBundle) -> list[int]:
    """Plan and send the stage's emails (no Prefect: the sender itself); their row ids."""
    plan_bundle(ls.engine, ls.settings, CHANNEL_CLASSES, bundle)
    with Session(ls.engine) as s:
        ids = pending_ids(s, bundle.message_ids).get("email", [])
    channels = {k: v for k, v in build_channels(ls.settings).items() if k == "email"}
    publish_deliveries(ls.engine, channels, ids, playbooks_dir=ls.settings.playbooks_dir,
                       max_attempts=2)
    return ids


def acknowledge(ls: Listening, ref: str = "INC-LISTEN-1") -> StageBundle:
    facts = dict(load_playbook("outage", ls.settings.playbooks_dir).drill_facts)
    return trigger(ls.engine, ls.settings, CHANNEL_CLASSES, playbook_name="outage",
                   facts={**facts, "incident_ref": ref}, actor=system_identity("test"))


def signed(ls: Listening, events: list[dict[str, Any]], *,
           timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events, separators=(",", ":")).encode() + b"\r\n"
    return body, ls.emulators.sendgrid.signer.headers(body, timestamp)


def event(name: str, email: str, *, key: str | None = None, recipient: int | None = None,
          event_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"email": email, "event": name, "timestamp": int(time.time()),
                           "sg_event_id": event_id or f"{name}-{email}"}
    if key:
        out["crisiscomms_key"] = key
    if recipient is not None:
        out["crisiscomms_recipient"] = str(recipient)
    return out


# -- SendGrid Event Webhook ---------------------------------------------------------------------


def test_emulator_events_confirm_store_once_and_a_bounce_suppresses_the_next_stage(
        listening: Listening) -> None:
    ls = listening
    bounced, complained = "subscriber0000007@drill.example.com", \
        "subscriber0000008@drill.example.com"
    ls.emulators.sendgrid.set_event_webhook(
        ls.base + "/v1/sendgrid/events", batch_size=100,
        plan=EventPlan.from_lists({"bounce": [bounced], "spamreport": [complained],
                                   "open": ["subscriber0000009@drill.example.com"]}))
    ack = acknowledge(ls)
    publish_email(ls, ack)
    assert ls.emulators.sendgrid.flush_events(30)
    stats = ls.emulators.sendgrid.event_stats()
    assert stats["failures"] == 0 and stats["posts"] >= 2  # batched, several events a POST
    with Session(ls.engine) as s:
        kinds = dict(s.execute(select(col(DeliveryEvent.event), func.count())
                               .group_by(col(DeliveryEvent.event))).all())
        linked = s.execute(select(func.count()).select_from(DeliveryEvent).where(
            col(DeliveryEvent.delivery_id).is_not(None))).scalar_one()
        suppressed = dict(s.execute(select(col(Recipient.email), col(Recipient.suppression))
                                    .where(col(Recipient.consent).is_(False))).all())
    assert kinds == {"processed": RECIPIENTS, "delivered": RECIPIENTS - 1, "bounce": 1,
                     "spamreport": 1, "open": 1}
    assert linked == sum(kinds.values())
    assert suppressed == {bounced: "bounce", complained: "spamreport"}
    # the next stage does not mail them
    trigger(ls.engine, ls.settings, CHANNEL_CLASSES, playbook_name="outage",
            facts={"incident_ref": "INC-LISTEN-1"}, stage="update",
            actor=system_identity("test"))
    update_bundle = approve(ls.engine, incident_ref="INC-LISTEN-1", stage="update",
                            approver=Identity("pr-lead", "PR lead", "key"),
                            settings=ls.settings)
    ls.emulators.sendgrid.set_event_webhook(None)
    before = ls.emulators.sendgrid.stats()["recipients"]
    publish_email(ls, update_bundle)
    assert ls.emulators.sendgrid.stats()["recipients"] - before == RECIPIENTS - 2
    got = {r["to"] for r in ls.emulators.sendgrid.received()[before:]}
    assert bounced not in got and complained not in got


def test_a_row_a_crash_left_sending_is_confirmed_by_a_processed_event(
        listening: Listening) -> None:
    ls = listening
    ids = publish_email(ls, acknowledge(ls))
    with Session(ls.engine) as s:
        s.execute(update(Delivery).where(col(Delivery.id).in_(ids[:2]))
                  .values(state=DeliveryState.sending))
        s.execute(update(Delivery).where(col(Delivery.id) == ids[2])
                  .values(state=DeliveryState.unconfirmed))
        s.commit()
        rows = s.execute(select(col(Delivery.key), col(Delivery.recipient_ids))
                         .where(col(Delivery.id).in_(ids[:3]))).all()
    events = [event("processed", f"r{rid}@drill.example.com", key=str(key), recipient=rid,
                    event_id=f"p-{key}-{rid}")
              for key, encoded in rows for rid in decode_ids(str(encoded))[:3]]
    body, headers = signed(ls, events)
    answer = ls.post("/v1/sendgrid/events", body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["confirmed"] == 3
    with Session(ls.engine) as s:
        states = set(s.execute(select(col(Delivery.state))
                               .where(col(Delivery.id).in_(ids[:3]))).scalars())
    assert states == {DeliveryState.sent}
    again = ls.post("/v1/sendgrid/events", body, headers)  # SendGrid retries: stored once
    assert again.json() == {**answer.json(), "stored": 0, "duplicates": len(events),
                            "confirmed": 0}
    assert ls.count(DeliveryEvent) == len(events)


def test_unsigned_badly_signed_expired_and_malformed_events_store_nothing(
        listening: Listening) -> None:
    ls = listening
    events = [event("bounce", "subscriber0000001@drill.example.com", recipient=1)]
    body, headers = signed(ls, events)
    unsigned = ls.post("/v1/sendgrid/events", body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    tampered = body.replace(b"bounce", b"open")
    assert ls.post("/v1/sendgrid/events", tampered, headers).status_code == 403
    forged = dict(headers)
    forged[sig.SENDGRID_SIGNATURE_HEADER] = ls.emulators.sendgrid.signer.sign(body, "1")
    assert ls.post("/v1/sendgrid/events", body, forged).status_code == 403
    old_stamp = str(int(time.time()) - 3600)
    old_body, old_headers = signed(ls, events, timestamp=old_stamp)
    expired = ls.post("/v1/sendgrid/events", old_body, old_headers)
    assert expired.status_code == 403 and "replay window" in expired.json()["message"]
    bad = [event("processed", "a@drill.example.com", event_id="ok-1"),
           {"email": "b@drill.example.com", "event": "processed", "timestamp": 1}]
    bad_body, bad_headers = signed(ls, bad)
    malformed = ls.post("/v1/sendgrid/events", bad_body, bad_headers)
    assert malformed.status_code == 400
    assert malformed.json()["field"] == "[1].sg_event_id"
    not_json, nj_headers = b"{nope", ls.emulators.sendgrid.signer.headers(b"{nope")
    assert ls.post("/v1/sendgrid/events", not_json, nj_headers).json()["field"] == "body"
    assert ls.count(DeliveryEvent) == 0
    with Session(ls.engine) as s:
        assert s.execute(select(func.count()).select_from(Recipient)
                         .where(col(Recipient.consent).is_(False))).scalar_one() == 0


def test_bodies_over_the_limit_are_refused_before_they_are_read(listening: Listening) -> None:
    ls = listening
    port = int(ls.base.rsplit(":", 1)[1])
    # 1. a declared Content-Length over the limit: answered at once, no body sent at all
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /v1/sendgrid/events HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        head = conn.recv(4096)
    assert head.startswith(b"HTTP/1.1 413")
    # 2. a chunked body without a length: cut at the cap while it streams
    total_sent = 0
    chunk = b"[" + b" " * 65_535
    answered = b""
    stamp = str(int(time.time())).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /v1/tickets/zendesk HTTP/1.1\r\nHost: x\r\n"
                     b"X-Zendesk-Webhook-Signature: c2lnbmF0dXJl\r\n"
                     b"X-Zendesk-Webhook-Signature-Timestamp: " + stamp + b"\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.setblocking(False)
        for _ in range(1600):  # would be 100 MB
            try:
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                total_sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            try:
                answered += conn.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                break
            if answered:
                break
    assert answered.startswith(b"HTTP/1.1 413"), answered[:100]
    # reading stopped at the cap: what was sent beyond it sat in socket buffers (a few MB on
    # loopback), nowhere near the 100 MB the client meant to send
    assert total_sent < 20 * MAX_BODY
    # 3. no credentials: refused from the headers, before the (unsent) body is read
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /v1/sendgrid/inbound HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"multipart/form-data; boundary=zz\r\nContent-Length: 900000\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 401")
    assert ls.count(Reaction) == 0
    assert httpx.get(ls.base + "/healthz").json() == {"ok": True}


# -- Inbound Parse ------------------------------------------------------------------------------


def test_a_reply_is_linked_to_its_batch_message_and_locale_and_stored_once(
        listening: Listening) -> None:
    ls = listening
    ack = acknowledge(ls)
    publish_email(ls, ack)
    sent = ls.emulators.sendgrid.received()
    german = next(r for r in sent if r["subject"] and "subscriber0000003@" in r["to"])
    with Session(ls.engine) as s:
        row = s.execute(select(Delivery).where(col(Delivery.key) == german["key"])).scalar_one()
        message = s.get(Message, row.message_id)
    assert message is not None and message.locale == "de"
    hostile = ("Immer noch kaputt!\u0007 <script>alert(1)</script> 火傷\n\n"
               "Am 23.11.2026 um 10:12 schrieb Example Corp Status <status@example.com>:\n"
               "> Wir arbeiten daran")
    body, headers = inbound_reply(
        from_address=german["to"], from_name="Anna", to_address=f"replies+{row.key}@"
        f"{REPLY_DOMAIN}", text=hostile, subject="Re: " + german["subject"],
        user=PARSE_USER, password=PARSE_PASSWORD,
        attachments={"screenshot.png": b"\x89PNG" + b"\x00" * 100})
    answer = ls.post("/v1/sendgrid/inbound", body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1 and answer.json()["linked"] == 1
    assert ls.post("/v1/sendgrid/inbound", body, headers).json()["duplicates"] == 1
    with Session(ls.engine) as s:
        reaction = s.execute(select(Reaction)).scalar_one()
        recipient = s.execute(select(Recipient).where(
            col(Recipient.email) == german["to"])).scalar_one()
    assert reaction.text == hostile  # stored exactly as sent
    assert (reaction.message_id, reaction.delivery_id, reaction.incident_id) == (
        row.message_id, row.id, ack.incident_id)
    assert (reaction.locale, reaction.channel, reaction.recipient_id) == ("de", "email",
                                                                          recipient.id)
    assert reaction.author == german["to"] and reaction.author_name == "Anna"


def test_a_reply_without_our_reply_to_is_linked_by_in_reply_to(listening: Listening) -> None:
    ls = listening
    ack = acknowledge(ls)
    ids = publish_email(ls, ack)
    with Session(ls.engine) as s:
        row = s.get(Delivery, ids[0])
    assert row is not None and row.provider_id
    body, headers = inbound_reply(
        from_address="subscriber0000002@drill.example.com", to_address="status@example.com",
        text="When will it be fixed?", in_reply_to=f"<{row.provider_id}@ismtpd0001p1.sendgrid"
        ".net>", charset="iso-8859-1", user=PARSE_USER, password=PARSE_PASSWORD)
    assert ls.post("/v1/sendgrid/inbound", body, headers).status_code == 200
    with Session(ls.engine) as s:
        reaction = s.execute(select(Reaction)).scalar_one()
    assert reaction.message_id == row.message_id and reaction.delivery_id == row.id


def test_inbound_parse_refuses_bad_credentials_and_names_a_bad_field(
        listening: Listening) -> None:
    ls = listening
    body, headers = inbound_reply(from_address="a@drill.example.com", to_address="x@y.example",
                                  text="hi", user=PARSE_USER, password="wrong")
    assert ls.post("/v1/sendgrid/inbound", body, headers).status_code == 403
    del headers["Authorization"]
    assert ls.post("/v1/sendgrid/inbound", body, headers).status_code == 401
    body, headers = inbound_reply(from_address="not an address", to_address="x@y.example",
                                  text="hi", user=PARSE_USER, password=PARSE_PASSWORD)
    bad = ls.post("/v1/sendgrid/inbound", body, headers)
    assert bad.status_code == 400 and bad.json()["field"] == "from"
    assert ls.count(Reaction) == 0


# -- tickets -------------------------------------------------------------------------------------


def test_tickets_signed_linked_to_the_named_or_open_incident(listening: Listening) -> None:
    ls = listening
    first = acknowledge(ls, "INC-LISTEN-1")
    second = acknowledge(ls, "INC-LISTEN-2")  # the most recent open incident
    zendesk = json.dumps({"ticket": {
        "id": 4711, "subject": "Dashboard down", "description": "Can't sign in",
        "tags": ["outage", "inc-listen-1"], "requester": {"email": "cto@big.example",
                                                          "name": "Chris"},
        "latest_comment": {"id": 9001, "body": "Our lawyer will call you. Still down."}}
    }).encode()
    stamp = str(int(time.time()))
    headers = {sig.ZENDESK_SIGNATURE_HEADER: sig.hmac_signature(ZENDESK_SECRET, stamp, zendesk),
               sig.ZENDESK_TIMESTAMP_HEADER: stamp, "Content-Type": "application/json"}
    assert ls.post("/v1/tickets/zendesk", zendesk, headers).json()["stored"] == 1
    assert ls.post("/v1/tickets/zendesk", zendesk, headers).json()["duplicates"] == 1
    bad = dict(headers)
    bad[sig.ZENDESK_SIGNATURE_HEADER] = sig.hmac_signature("guess", stamp, zendesk)
    assert ls.post("/v1/tickets/zendesk", zendesk, bad).status_code == 403
    unsigned = ls.post("/v1/tickets/zendesk", zendesk, {"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    freshdesk = json.dumps({"freshdesk_webhook": {
        "ticket_id": 88, "ticket_subject": "Slow", "ticket_description": "Pages load slowly",
        "ticket_contact_email": "ann@small.example", "ticket_tags": ""}}).encode()
    fd_headers = {sig.OUR_SIGNATURE_HEADER: sig.hmac_signature(FRESHDESK_SECRET, stamp,
                                                               freshdesk),
                  sig.OUR_TIMESTAMP_HEADER: stamp}
    assert ls.post("/v1/tickets/freshdesk", freshdesk, fd_headers).json()["stored"] == 1
    malformed = json.dumps({"ticket": {"id": 1, "requester": "someone"}}).encode()
    m_headers = {sig.ZENDESK_SIGNATURE_HEADER: sig.hmac_signature(ZENDESK_SECRET, stamp,
                                                                  malformed),
                 sig.ZENDESK_TIMESTAMP_HEADER: stamp}
    refused = ls.post("/v1/tickets/zendesk", malformed, m_headers)
    assert refused.status_code == 400 and refused.json()["field"] == "ticket.requester"
    with Session(ls.engine) as s:
        rows = {r.source_id: r for r in s.execute(select(Reaction)).scalars()}
    assert set(rows) == {"zendesk:4711:9001",
                         next(k for k in rows if k.startswith("freshdesk:88:"))}
    assert rows["zendesk:4711:9001"].incident_id == first.incident_id  # named by its tag
    assert rows["zendesk:4711:9001"].channel == "support"
    fd = next(r for k, r in rows.items() if k.startswith("freshdesk:"))
    assert fd.incident_id == second.incident_id  # no reference: the open incident


# -- CSAT ----------------------------------------------------------------------------------------


def test_csat_get_shows_post_votes_once_per_recipient(listening: Listening) -> None:
    ls = listening
    ack = acknowledge(ls)
    with Session(ls.engine) as s:
        recipient = s.execute(select(Recipient).where(col(Recipient.id) == 5)).scalar_one()
        message_id = ack.message_ids[0]
    token = csat.make_token(CSAT_SECRET, incident_id=ack.incident_id, recipient_id=5,
                            message_id=message_id)
    url = f"{ls.base}/v1/csat/{token}"
    page = httpx.get(url + "?rating=4")
    assert page.status_code == 200 and 'value="4" checked' in page.text
    assert "<form method=\"post\">" in page.text
    csp = page.headers["content-security-policy"]  # its own inline style by hash, no framing
    assert "frame-ancestors 'none'" in csp and inline_style_hashes(page.text)[0] in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert ls.count(Reaction) == 0  # link scanners never vote
    voted = httpx.post(url, data={"rating": "4", "comment": "Fast <b>fix</b>"})
    assert voted.status_code == 200
    changed = httpx.post(url, data={"rating": "2", "comment": "It broke again"})
    assert changed.status_code == 200
    with Session(ls.engine) as s:
        rows = list(s.execute(select(Reaction)).scalars())
    assert len(rows) == 1  # one per recipient per incident: the second replaced the first
    assert (rows[0].rating, rows[0].text, rows[0].sentiment) == (2, "It broke again",
                                                                 "negative")
    assert (rows[0].recipient_id, rows[0].incident_id, rows[0].author) == (
        5, ack.incident_id, recipient.email)
    assert httpx.post(url, data={"rating": "9"}).status_code == 400
    assert httpx.post(url, json={"rating": "x"}).json()["field"] == "rating"
    other = csat.make_token(CSAT_SECRET, incident_id=ack.incident_id, recipient_id=6,
                            message_id=message_id)
    forged = token.rsplit(".", 1)[0].replace(".5.", ".6.") + "." + token.rsplit(".", 1)[1]
    assert forged != other
    assert httpx.post(f"{ls.base}/v1/csat/{forged}", data={"rating": "5"}).status_code == 404
    assert httpx.get(f"{ls.base}/v1/csat/nonsense").status_code == 404
    with Session(ls.engine) as s:
        assert s.execute(select(Reaction)).scalar_one().rating == 2


def test_the_resolution_email_carries_each_recipients_own_rating_link(
        listening: Listening) -> None:
    import re

    ls = listening
    acknowledge(ls)
    trigger(ls.engine, ls.settings, CHANNEL_CLASSES, playbook_name="outage",
            facts={"incident_ref": "INC-LISTEN-1"}, stage="resolve",
            actor=system_identity("test"))
    resolve = approve(ls.engine, incident_ref="INC-LISTEN-1", stage="resolve",
                      approver=Identity("pr-lead", "PR lead", "key"), settings=ls.settings)
    publish_email(ls, resolve)
    sent = ls.emulators.sendgrid.received()
    assert len(sent) == RECIPIENTS
    with Session(ls.engine) as s:
        ids = dict(s.execute(select(col(Recipient.email), col(Recipient.id))).all())
    pattern = re.compile(re.escape(ls.base) + r"/v1/csat/([0-9.A-Za-z_-]+)\?rating=([1-5])")
    tokens = set()
    for record in sent:
        links = pattern.findall(record["html"])
        assert [r for _, r in links] == ["1", "2", "3", "4", "5"]
        assert len({t for t, _ in links}) == 1
        token = csat.read_token(CSAT_SECRET, links[0][0])
        assert token is not None and token.recipient_id == ids[record["to"]]
        assert f"{ls.base}/v1/csat/{links[0][0]}" in record["text"]
        tokens.add(links[0][0])
    assert len(tokens) == RECIPIENTS  # one per recipient, never shared
    record = sent[0]
    link = pattern.search(record["html"])
    assert link is not None
    assert httpx.get(link.group(0)).status_code == 200 and ls.count(Reaction) == 0
    assert httpx.post(link.group(0).split("?")[0], data={"rating": "5"}).status_code == 200
    with Session(ls.engine) as s:
        reaction = s.execute(select(Reaction)).scalar_one()
    assert (reaction.source, reaction.rating, reaction.author) == ("csat", 5, record["to"])
    assert reaction.message_id is not None and reaction.locale in ("en", "de")


def test_refusals_are_logged_without_secrets(listening: Listening,
                                             caplog: pytest.LogCaptureFixture) -> None:
    import base64
    import logging

    ls = listening
    caplog.set_level(logging.DEBUG)
    body = b'{"ticket": {"id": 1}}'
    stamp = str(int(time.time()))
    wrong = sig.hmac_signature("not-the-secret", stamp, body)
    answers = [
        ls.post("/v1/tickets/zendesk", body, {sig.ZENDESK_SIGNATURE_HEADER: wrong,
                                              sig.ZENDESK_TIMESTAMP_HEADER: stamp}),
        ls.post("/v1/sendgrid/inbound", b"x", {"Authorization": "Basic " + base64.b64encode(
            f"{PARSE_USER}:{PARSE_PASSWORD}x".encode()).decode(),
            "Content-Type": "multipart/form-data; boundary=zz"}),
    ]
    assert [a.status_code for a in answers] == [403, 403]
    shown = caplog.text + "".join(a.text for a in answers)
    assert "refused" in caplog.text
    for secret in (ZENDESK_SECRET, FRESHDESK_SECRET, PARSE_PASSWORD, CSAT_SECRET, wrong,
                   ls.settings.resolved_database_url):
        assert secret not in shown
    assert CSAT_SECRET not in repr(ls.settings) and PARSE_PASSWORD not in str(ls.settings)


def test_the_listen_command_serves_the_app(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "CRISISCOMMS_DATA_DIR": str(tmp_path / "data"),
           "CRISISCOMMS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    command = str(Path(sys.executable).parent / "crisiscomms")
    proc = subprocess.Popen([command, "listen", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer is not None and answer.json() == {"ok": True}
        unsigned = httpx.post(f"http://127.0.0.1:{port}/v1/sendgrid/events", content=b"[]")
        assert unsigned.status_code == 401  # no verification key configured: refused
    finally:
        proc.terminate()
        proc.wait(timeout=10)
