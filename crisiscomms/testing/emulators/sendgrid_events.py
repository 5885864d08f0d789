"""What the SendGrid emulator tells afterwards: signed Event Webhook batches, and replies.

- :class:`EventSigner`: an ECDSA P-256 key pair of the emulator's own; its public key
  (base64 DER, what SendGrid's settings page shows) goes into
  ``CRISISCOMMS_SENDGRID_WEBHOOK_PUBLIC_KEY``; it signs ``timestamp + body`` the way SendGrid
  does (``X-Twilio-Email-Event-Webhook-Signature``/``-Timestamp``).
- :class:`EventPoster`: a thread that POSTs the queued events to ``event_webhook_url`` in
  batches (SendGrid sends many events per request), retrying a batch the receiver did not
  accept with a 2xx, as SendGrid does.
- :func:`events_for`: the events of one accepted personalization (``processed``, then
  ``delivered``, or ``bounce``/``dropped``/``spamreport``/``open``/``click``/``unsubscribe``
  for the addresses a test or drill chose), each with a unique ``sg_event_id`` and our
  ``custom_args`` back at the top level.
- :func:`inbound_reply`: a signed-in (basic auth) Inbound Parse POST of a reply to one of our
  emails, as SendGrid's default (not raw) mode posts it: drives the drill's crowd.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from itertools import islice
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
OUTCOMES = ("bounce", "dropped", "spamreport", "open", "click", "unsubscribe",
            "group_unsubscribe", "deferred")
"""Events the emulator can be told to send for chosen addresses (beside processed/delivered)."""


class EventSigner:
    """An ECDSA P-256 key pair that signs webhook bodies like SendGrid."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = base64.b64encode(der).decode()
        """Base64 DER SubjectPublicKeyInfo: what SendGrid shows as the verification key."""

    def sign(self, body: bytes, timestamp: str) -> str:
        der = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """The request headers of a signed batch (timestamp: now)."""
        stamp = timestamp or str(int(time.time()))
        return {"Content-Type": "application/json", SIGNATURE_HEADER: self.sign(body, stamp),
                TIMESTAMP_HEADER: stamp}


@dataclass
class EventPlan:
    """Which addresses get which outcome (lower-cased); the rest: processed + delivered."""

    outcomes: dict[str, str] = field(default_factory=dict)
    """address → one of :data:`OUTCOMES`."""
    delivered: bool = True
    """Send ``delivered`` for everyone not bounced or dropped."""

    @classmethod
    def from_lists(cls, lists: Mapping[str, Iterable[str]], *, delivered: bool = True,
                   ) -> EventPlan:
        outcomes: dict[str, str] = {}
        for outcome, addresses in lists.items():
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown event {outcome!r} (one of {', '.join(OUTCOMES)})")
            outcomes.update({a.lower(): outcome for a in addresses})
        return cls(outcomes=outcomes, delivered=delivered)


def events_for(address: str, *, message_id: str, index: int, key: str | None,
               recipient: str | None, plan: EventPlan, now: float) -> list[dict[str, Any]]:
    """The events SendGrid would send about one recipient of an accepted request."""
    base: dict[str, Any] = {"email": address, "timestamp": int(now),
                            "smtp-id": f"<{message_id}@emulator.sendgrid.test>",
                            "sg_message_id": f"{message_id}.emulator-{index}"}
    if key is not None:
        base["crisiscomms_key"] = key
    if recipient is not None:
        base["crisiscomms_recipient"] = recipient

    def event(name: str, **extra: Any) -> dict[str, Any]:
        return {**base, "event": name, "sg_event_id": secrets.token_urlsafe(16), **extra}

    outcome = plan.outcomes.get(address.lower())
    out = [event("processed")]
    if outcome == "bounce":
        out.append(event("bounce", type="bounce", status="5.1.1",
                         reason="550 5.1.1 The email account does not exist"))
    elif outcome == "dropped":
        out.append(event("dropped", reason="Bounced Address"))
    elif outcome == "deferred":
        out.append(event("deferred", response="450 mailbox busy", attempt="1"))
    else:
        if plan.delivered:
            out.append(event("delivered", response="250 OK"))
        if outcome in ("open", "click", "spamreport", "unsubscribe", "group_unsubscribe"):
            out.append(event(outcome))
    return out


class EventPoster:
    """POSTs queued events to a receiver in signed batches, from a daemon thread.

    Events are queued as iterables and expanded only when a batch is built, so a fan-out to a
    million recipients does not hold two million event dicts in memory at once."""

    def __init__(self, url: str, signer: EventSigner, *, batch_size: int = 1000,
                 timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("event_webhook_url must be an http(s) URL")
        self.url, self.signer, self.batch_size, self.timeout_s = url, signer, batch_size, \
            timeout_s
        self._sources: deque[Iterator[dict[str, Any]]] = deque()
        self._retry: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self.posts = 0
        self.failures = 0
        self.events_posted = 0
        self._thread = threading.Thread(target=self._run, name="sendgrid-event-webhook",
                                        daemon=True)
        self._thread.start()

    def put(self, events: Iterable[dict[str, Any]]) -> None:
        with self._cond:
            self._sources.append(iter(events))
            self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued event was accepted; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._sources or self._retry or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"posts": self.posts, "failures": self.failures,
                    "events_posted": self.events_posted, "pending_sources": len(self._sources)}

    def _next_batch(self) -> list[dict[str, Any]]:
        """Under the lock: the batch to retry, else up to ``batch_size`` new events."""
        if self._retry:
            retry, self._retry = self._retry, []
            return retry
        batch: list[dict[str, Any]] = []
        while self._sources and len(batch) < self.batch_size:
            batch.extend(islice(self._sources[0], self.batch_size - len(batch)))
            if len(batch) < self.batch_size:
                self._sources.popleft()  # exhausted
        return batch

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                while not (self._sources or self._retry) and not self._stopped:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                if self._stopped:
                    return
                self._busy = True
                batch = self._next_batch()
            ok = not batch or self._post(batch)
            with self._cond:
                if ok:
                    if batch:
                        self.posts += 1
                        self.events_posted += len(batch)
                    backoff = 0.05
                else:
                    self.failures += 1
                    self._retry = batch  # SendGrid retries the same batch
                self._cond.notify_all()
            if not ok:
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _post(self, batch: list[dict[str, Any]]) -> bool:
        body = json.dumps(batch, separators=(",", ":")).encode() + b"\r\n"
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers=self.signer.headers(body))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return bool(200 <= response.status < 300)
        except (urllib.error.URLError, OSError):
            return False


def inbound_reply(*, from_address: str, to_address: str, text: str, subject: str = "Re: ",
                  in_reply_to: str | None = None, message_id: str | None = None,
                  from_name: str | None = None, html: str | None = None,
                  charset: str = "utf-8", attachments: Mapping[str, bytes] | None = None,
                  user: str, password: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an Inbound Parse POST carrying one reply (SendGrid's default
    mode: one form field per part, ``charsets`` naming each field's charset). ``in_reply_to``:
    the Message-ID of the email answered (``<X-Message-Id@host>``)."""
    boundary = "xYzZY" + secrets.token_hex(12)
    sender = f"{from_name} <{from_address}>" if from_name else from_address
    msgid = message_id or make_msgid(domain="crowd.example")
    header_lines = [f"Message-ID: {msgid}", f"From: {sender}", f"To: {to_address}",
                    f"Subject: {subject}", f"Date: {format_datetime(datetime.now(UTC))}",
                    "MIME-Version: 1.0"]
    if in_reply_to:
        header_lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    fields: dict[str, str] = {
        "headers": "\n".join(header_lines) + "\n", "from": sender, "to": to_address,
        "subject": subject, "text": text,
        "envelope": json.dumps({"to": [to_address], "from": from_address}),
        "attachments": str(len(attachments or {})), "spam_score": "0.1", "SPF": "pass",
        "dkim": "{@crowd.example : pass}", "sender_ip": "192.0.2.10",
    }
    if html is not None:
        fields["html"] = html
    charsets = {name: ("utf-8" if name in ("headers", "envelope") else charset)
                for name in fields}
    fields["charsets"] = json.dumps(charsets)
    chunks: list[bytes] = []
    for name, value in fields.items():
        encoding = charsets.get(name, "utf-8")
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
                      f"\r\n\r\n".encode() + value.encode(encoding, "replace") + b"\r\n")
    for index, (filename, content) in enumerate((attachments or {}).items(), start=1):
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; "
                      f"name=\"attachment{index}\"; filename=\"{filename}\"\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n".encode()
                      + content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Authorization": f"Basic {token}"}
    return b"".join(chunks), headers
