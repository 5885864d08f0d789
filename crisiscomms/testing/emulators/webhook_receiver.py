"""A Standard Webhooks receiver: what a system at the other end of the outgoing webhook does.

``POST /hooks/<name>`` verifies ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
with the secret it was given, using the very check our intake runs
(``intake/signatures.py`` ``verify_standard``: five-minute window, constant-time compare) and
answers 401 naming the header at fault, 400 for a body that is not a JSON object of the
``{"type", "timestamp", "data"}`` shape, and 204 when accepted. It keeps each ``webhook-id``
once, as the scheme asks receivers to: a repeated id (a resend after a lost answer) is
answered 204 and counted in ``redelivered``, not recorded again. 429 with ``Retry-After`` beyond
the injected rate limit.

The witness: ``received(key)`` is the message whose ``webhook-id`` is ``key``; ``duplicates``
counts the same message (incident, stage, locale and content hash) recorded twice under
different ids (which only a sender bug could make).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crisiscomms.core.errors import IntakeError
from crisiscomms.intake.signatures import verify_standard
from crisiscomms.testing.emulators.faults import RateWindow
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Reply,
    Request,
    Route,
    iso_utc,
    json_reply,
)

WINDOW_S = 300.0


@dataclass(frozen=True)
class _Delivery:
    webhook_id: str
    payload: dict[str, Any]
    received_at: float

    def record(self) -> dict[str, Any]:
        data = self.payload.get("data") or {}
        return {"channel": "webhook", "key": self.webhook_id, "type": self.payload.get("type"),
                "locale": data.get("locale"), "text": data.get("text"),
                "subject": data.get("subject"), "data": data,
                "received_at": iso_utc(self.received_at)}


class WebhookReceiver(EmulatorServer):
    channel = "webhook"

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0,
                 name: str = "crisiscomms") -> None:
        super().__init__(host=host, port=port)
        self.secret = secret
        self.name = name
        self._lock = threading.Lock()
        self.clear_records()

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/{self.name}"

    def route(self, request: Request) -> Route | None:
        if request.method == "POST" and request.path == f"/hooks/{self.name}":
            return self._receive
        return None

    def authenticate(self, request: Request) -> Reply | None:
        headers = {k: str(v) for k, v in request.headers.items()}
        try:
            verify_standard(headers, request.body, [self.secret], now=time.time(),
                            window_s=WINDOW_S)
        except IntakeError as exc:
            return json_reply(401, {"error": str(exc)})
        return None

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return json_reply(429, {"error": "slow down"},
                          (("Retry-After", str(max(1, window.retry_after_s))),))

    def error_reply(self, status: int) -> Reply:
        return json_reply(status, {"error": "injected error"})

    def not_found_reply(self, request: Request) -> Reply:
        return json_reply(404, {"error": "no such hook"})

    def too_large_reply(self) -> Reply:
        return json_reply(413, {"error": "too large"})

    def _receive(self, request: Request) -> Reply:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not (isinstance(payload, dict) and isinstance(payload.get("type"), str)
                and isinstance(payload.get("data"), dict) and "timestamp" in payload):
            return json_reply(400, {"error": "a {type, timestamp, data} JSON object"})
        webhook_id = str(request.header("webhook-id"))
        with self._lock:
            if webhook_id in self._by_id:
                self.redelivered += 1
            else:
                delivery = _Delivery(webhook_id, payload, time.time())
                self._deliveries.append(delivery)
                self._by_id[webhook_id] = delivery
        return Reply(204)

    def _matching(self, key: str | None) -> list[_Delivery]:
        with self._lock:
            deliveries = list(self._deliveries)
        return deliveries if key is None else [d for d in deliveries if d.webhook_id == key]

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        for delivery in self._matching(key):
            yield delivery.record()

    def key_count(self, key: str) -> int:
        return len(self._matching(key))

    def record_stats(self) -> dict[str, int]:
        deliveries = self._matching(None)
        same = Counter((str(d.payload["data"].get("incident_ref")),
                        str(d.payload["data"].get("stage")),
                        str(d.payload["data"].get("locale")),
                        str(d.payload["data"].get("content_hash"))) for d in deliveries)
        return {"accepted_messages": len(deliveries), "recipients": len(deliveries),
                "duplicates": sum(n - 1 for n in same.values() if n > 1),
                "distinct_keys": len(deliveries), "redelivered": self.redelivered}

    def clear_records(self) -> None:
        with self._lock:
            self._deliveries: list[_Delivery] = []
            self._by_id: dict[str, _Delivery] = {}
            self.redelivered = 0
