"""SendGrid v3 mail send emulator: ``POST /v3/mail/send`` on loopback.

Answers like SendGrid (202 + ``X-Message-Id``; 400 naming the field; 401; 413; 429 with
``X-RateLimit-*`` and ``Retry-After``; sandbox mode 200) and records every accepted
recipient-message. Told where (``event_webhook_url``, or ``POST /_emulator/event_webhook``
``{"url", "outcomes": {"bounce": [addresses], ...}}``), it then POSTs ECDSA-signed Event
Webhook batches about what it accepted (``processed``, ``delivered``, and bounce/spamreport/
open... for chosen addresses; see ``sendgrid_events.py``); ``GET /_emulator/event_webhook``
gives its public key. Storage is compact: each request's content is stored once, and per
recipient only the address and its personalization's substitutions; the substitutions are
applied when records are read (`received`, `export_jsonl`, ``/_emulator/received``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crisiscomms.render.substitutions import apply_substitutions
from crisiscomms.testing.emulators.faults import Faults, RateWindow
from crisiscomms.testing.emulators.sendgrid_events import (
    EventPlan,
    EventPoster,
    EventSigner,
    events_for,
)
from crisiscomms.testing.emulators.sendgrid_validation import (
    MailError,
    MailErrors,
    ParsedMail,
    ParsedPersonalization,
    parse_mail,
)
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Reply,
    Request,
    Route,
    iso_utc,
    json_reply,
    parse_json,
)

MAIL_SEND_PATH = "/v3/mail/send"
INVALID_KEY_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"
TOO_LARGE_MESSAGE = (
    "The JSON payload you have included in your request is too large. The total size of "
    "your request, including attachments, must not exceed 20MB."
)


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class _Accepted:
    message_id: str
    received_at: float
    mail: ParsedMail


class _MailStore:
    """Accepted messages and the per-key indexes; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._messages: list[_Accepted] = []
            self._key_messages: dict[str, list[int]] = {}
            self._key_counts: dict[str, int] = {}
            self._seen: dict[str, set[str]] = {}
            self._duplicate_pairs: set[tuple[str, str]] = set()
            self._recipients = 0
            self._sandboxed = 0

    def add(self, accepted: _Accepted) -> None:
        with self._lock:
            index = len(self._messages)
            self._messages.append(accepted)
            for personalization in accepted.mail.personalizations:
                count = len(personalization.to)
                self._recipients += count
                key = personalization.key
                if key is None:
                    continue
                indexes = self._key_messages.get(key)
                if indexes is None:
                    self._key_messages[key] = [index]
                elif indexes[-1] != index:
                    indexes.append(index)
                self._key_counts[key] = self._key_counts.get(key, 0) + count
                seen = self._seen.get(key)
                if seen is None:
                    seen = self._seen[key] = set()
                for email in personalization.to:
                    folded = email.lower()
                    if folded == email:
                        folded = email  # keep one string object, not two
                    if folded in seen:
                        self._duplicate_pairs.add((key, folded))
                    else:
                        seen.add(folded)

    def count_sandboxed(self) -> None:
        with self._lock:
            self._sandboxed += 1

    def key_count(self, key: str) -> int:
        with self._lock:
            return self._key_counts.get(key, 0)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "accepted_messages": len(self._messages),
                "recipients": self._recipients,
                "duplicates": len(self._duplicate_pairs),
                "distinct_keys": len(self._key_counts),
                "sandboxed": self._sandboxed,
            }

    def messages(self, key: str | None) -> list[_Accepted]:
        """A snapshot of the messages to read (all, or those holding ``key``)."""
        with self._lock:
            if key is None:
                return list(self._messages)
            return [self._messages[i] for i in self._key_messages.get(key, [])]


def _records(accepted: _Accepted, key: str | None) -> Iterator[dict[str, Any]]:
    mail = accepted.mail
    received_at = iso_utc(accepted.received_at)
    for personalization in mail.personalizations:
        if key is not None and personalization.key != key:
            continue
        subject, text, html = _render(mail, personalization)
        for email in personalization.to:
            yield {
                "channel": "email",
                "key": personalization.key,
                "batch": personalization.batch,
                "message_id": accepted.message_id,
                "to": email,
                "subject": subject,
                "text": text,
                "html": html,
                "received_at": received_at,
            }


def _render(
    mail: ParsedMail, personalization: ParsedPersonalization
) -> tuple[str | None, str | None, str | None]:
    subs = personalization.substitutions
    subject = personalization.subject if personalization.subject else mail.subject
    return (
        apply_substitutions(subject, subs),
        apply_substitutions(mail.text, subs),
        apply_substitutions(mail.html, subs),
    )


# --------------------------------------------------------------------------------------------
# The emulator


def _errors_reply(
    status: int,
    errors: list[MailError],
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    return json_reply(status, {"errors": [e.to_json() for e in errors]}, headers)


class SendGridEmulator(EmulatorServer):
    """SendGrid v3 ``POST /v3/mail/send``; point ``SendGridAPIClient(key, host=emu.url)`` at it."""

    channel = "email"

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        event_webhook_url: str | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        super().__init__(host=host, port=port, faults=faults)
        self._authorization = f"Bearer {api_key}"
        self._store = _MailStore()
        self.signer = EventSigner()
        self._poster: EventPoster | None = None
        self._plan = EventPlan()
        if event_webhook_url:
            self.set_event_webhook(event_webhook_url)

    # ---- Event Webhook ----------------------------------------------------------------------

    @property
    def webhook_public_key(self) -> str:
        """The verification key of its signed events (base64 DER, as SendGrid shows it)."""
        return self.signer.public_key

    def set_event_webhook(self, url: str | None, *, plan: EventPlan | None = None,
                          batch_size: int = 1000) -> None:
        """Post events of every later accepted request to ``url`` (None: stop posting)."""
        old, self._poster = self._poster, None
        if old is not None:
            old.stop()
        self._plan = plan or EventPlan()
        if url:
            self._poster = EventPoster(url, self.signer, batch_size=batch_size)

    def flush_events(self, timeout_s: float = 30.0) -> bool:
        """Wait until every event so far was accepted by the receiver (True), or timeout."""
        return True if self._poster is None else self._poster.flush(timeout_s)

    def event_stats(self) -> dict[str, int]:
        return {} if self._poster is None else self._poster.stats()

    def stop(self) -> None:
        self.set_event_webhook(None)
        super().stop()

    def control(self, request: Request, name: str) -> Reply | None:
        if name != "event_webhook":
            return None
        if request.method == "GET":
            return json_reply(200, {"public_key": self.webhook_public_key,
                                    "stats": self.event_stats()})
        if request.method != "POST":
            return None
        try:
            body = parse_json(request.body) if request.body else {}
            plan = EventPlan.from_lists(body.get("outcomes") or {},
                                        delivered=bool(body.get("delivered", True)))
            self.set_event_webhook(body.get("url"), plan=plan,
                                   batch_size=int(body.get("batch_size") or 1000))
        except (ValueError, TypeError, AttributeError) as exc:
            return json_reply(400, {"error": str(exc)})
        return json_reply(200, {"public_key": self.webhook_public_key})

    def _post_events(self, message_id: str, mail: ParsedMail, now: float) -> None:
        poster = self._poster
        if poster is not None:
            poster.put(self._events(message_id, mail, now, self._plan))

    @staticmethod
    def _events(message_id: str, mail: ParsedMail, now: float,
                plan: EventPlan) -> Iterator[dict[str, Any]]:
        """The events of one accepted request, made as the poster reads them."""
        index = 0
        for personalization in mail.personalizations:
            for email in personalization.to:
                yield from events_for(email, message_id=message_id, index=index,
                                      key=personalization.key,
                                      recipient=personalization.recipient, plan=plan, now=now)
                index += 1

    # ---- provider API ---------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path = request.path.rstrip("/")
        if path == MAIL_SEND_PATH and request.method == "POST":
            return self._mail_send
        return None

    def not_found_reply(self, request: Request) -> Reply:
        if request.path.rstrip("/") == MAIL_SEND_PATH:
            return _errors_reply(405, [MailError("Method Not Allowed", None)])
        return _errors_reply(404, [MailError("resource not found", None)])

    def authenticate(self, request: Request) -> Reply | None:
        header = request.header("Authorization")
        if not header:
            return _errors_reply(401, [MailError("authorization required", None)])
        if not secrets.compare_digest(header.strip().encode(), self._authorization.encode()):
            return _errors_reply(401, [MailError(INVALID_KEY_MESSAGE, None)])
        return None

    def too_large_reply(self) -> Reply:
        return _errors_reply(413, [MailError(TOO_LARGE_MESSAGE, None)])

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        headers = (
            ("X-RateLimit-Limit", str(window.limit)),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", str(window.reset_epoch)),
            ("Retry-After", str(window.retry_after_s)),
        )
        return json_reply(
            429, {"errors": [{"field": None, "message": "too many requests"}]}, headers
        )

    def error_reply(self, status: int) -> Reply:
        message = {
            500: "internal error",
            502: "bad gateway",
            503: "service unavailable",
            504: "gateway timeout",
        }.get(status, "error")
        return json_reply(status, {"errors": [{"field": None, "message": message}]})

    def _mail_send(self, request: Request) -> Reply:
        try:
            body = parse_json(request.body)
        except ValueError:
            return _errors_reply(400, [MailError("Bad Request", None)])
        try:
            mail = parse_mail(body)
        except MailErrors as refused:
            return _errors_reply(refused.status, refused.errors)
        if mail.sandbox:
            self._store.count_sandboxed()
            return Reply(200)
        message_id = secrets.token_urlsafe(16)
        now = time.time()
        self._store.add(_Accepted(message_id, now, mail))
        self._post_events(message_id, mail, now)
        return Reply(202, headers=(("X-Message-Id", message_id),))

    # ---- records --------------------------------------------------------------------------

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        for accepted in self._store.messages(key):
            yield from _records(accepted, key)

    def key_count(self, key: str) -> int:
        return self._store.key_count(key)

    def addresses(self) -> dict[str, Any]:
        """Identity counts over every accepted personalization, without rendering bodies (a
        million records are read in about a second)."""
        counts: dict[str, int] = {}
        for accepted in self._store.messages(None):
            for personalization in accepted.mail.personalizations:
                for email in personalization.to:
                    folded = email.lower()
                    counts[folded] = counts.get(folded, 0) + 1
        return {"distinct": len(counts), "repeated": sorted(a for a, n in counts.items() if n > 1),
                "addresses": sorted(counts)}

    def record_stats(self) -> dict[str, int]:
        return self._store.stats()

    def clear_records(self) -> None:
        self._store.clear()
