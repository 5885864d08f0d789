"""The SendGrid emulator's Event Webhook against a real loopback receiver: signed batches of
what it accepted, a refused batch retried as is (as SendGrid retries), no event lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sendgrid import SendGridAPIClient

from crisiscomms.reactions.signatures import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    verify_sendgrid,
)
from crisiscomms.testing.emulators import SendGridEmulator
from crisiscomms.testing.emulators.sendgrid_events import EventPlan

pytestmark = pytest.mark.integration


class Receiver(ThreadingHTTPServer):
    def __init__(self, refuse_first: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.refuse_left = refuse_first
        self.batches: list[tuple[bytes, dict[str, str]]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            refuse = self.server.refuse_left > 0
            self.server.refuse_left -= 1
            if not refuse:
                self.server.batches.append((body, dict(self.headers)))
        self.send_response(503 if refuse else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(refuse_first=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_signed_batches_retried_until_accepted(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/v1/sendgrid/events"
    with SendGridEmulator("SG.webhook-test").start() as emulator:
        emulator.set_event_webhook(url, batch_size=7, plan=EventPlan.from_lists(
            {"bounce": ["b@example.com"], "spamreport": ["s@example.com"]}))
        to = ["a@example.com", "b@example.com", "s@example.com"] + [
            f"r{i}@example.com" for i in range(7)]
        body = {"from": {"email": "status@example.com"}, "subject": "s",
                "content": [{"type": "text/plain", "value": "t"}],
                "personalizations": [{"to": [{"email": a}], "custom_args": {
                    "crisiscomms_key": "k" * 40, "crisiscomms_recipient": str(i)}}
                    for i, a in enumerate(to)]}
        client = SendGridAPIClient("SG.webhook-test", host=emulator.url)
        assert client.client.mail.send.post(request_body=body).status_code == 202
        assert emulator.flush_events(20)
        stats = emulator.event_stats()
    assert stats["failures"] == 2  # refused twice, then the same batch again
    events: list[dict[str, Any]] = []
    for raw, headers in receiver.batches:
        verify_sendgrid(emulator.webhook_public_key, raw, headers[SENDGRID_SIGNATURE_HEADER],
                        headers[SENDGRID_TIMESTAMP_HEADER], max_age_s=60)
        assert raw.endswith(b"\r\n")
        batch = json.loads(raw)
        assert len(batch) <= 7
        events.extend(batch)
    assert len({e["sg_event_id"] for e in events}) == len(events)  # none twice, none lost
    kinds: dict[str, list[str]] = {}
    for e in events:
        kinds.setdefault(e["event"], []).append(e["email"])
        assert e["crisiscomms_key"] == "k" * 40
        assert e["crisiscomms_recipient"] == str(to.index(e["email"]))
    assert sorted(kinds["processed"]) == sorted(to)
    assert kinds["bounce"] == ["b@example.com"] and kinds["spamreport"] == ["s@example.com"]
    assert sorted(kinds["delivered"]) == sorted(a for a in to if a != "b@example.com")
