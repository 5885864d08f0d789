"""Slack and Microsoft Teams incoming webhook emulators (our own people's channels).

**Slack** ``POST /services/<T>/<B>/<secret>``: the path is the credential (404 ``no_service``
for another, as Slack answers an unknown or revoked webhook). The body must be JSON with
``text`` or ``blocks`` (400 ``no_text``); blocks are checked as Block Kit checks them: at most
50, a ``header`` holds ``plain_text`` of at most 150 characters, a ``section`` text of at most
3,000 (400 ``invalid_blocks``). 200 ``ok`` (``text/plain``) when accepted; 429 with
``Retry-After`` (seconds) beyond the injected rate limit.

**Teams** ``POST /webhookb2/<id>`` (a classic incoming webhook; Workflows URLs answer the same
here): the envelope must be ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": {"type": "AdaptiveCard", "version",
"body": [...]}}]}`` (400 with the reason otherwise); over 28 KB: 413. Accepted: 202 (as
Workflows answers). 429 with ``Retry-After`` beyond the rate limit.

**Slack's Web API** on the same server, for the bot-token mode (``Authorization: Bearer
<bot_token>``; refusals are HTTP 200 ``{"ok": false, "error"}`` as Slack answers):
``chat.postMessage`` (``channel``, ``blocks``/``text``, ``thread_ts``, ``metadata``) → ``{"ok",
"channel", "ts"}``; ``chat.update`` (``channel``, ``ts``) edits a message in place;
``conversations.history`` and ``conversations.replies`` (``ts``) list messages newest first
with their ``metadata`` when ``include_all_metadata`` is set.

Incoming webhooks tell the sender no id and take no idempotency key; the witness keys such a
message by the SHA-256 of its JSON body, a Web API message by the ledger key in its
``metadata`` (``key_count``), and ``duplicates`` counts keys received twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crisiscomms.testing.emulators.faults import RateWindow
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Reply,
    Request,
    Route,
    iso_utc,
    json_reply,
)

TEAMS_MAX_BYTES = 28 * 1024


def _text(status: int, body: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, body.encode(), headers, "text/plain; charset=utf-8")


@dataclass(frozen=True)
class _Message:
    digest: str
    payload: dict[str, Any]
    received_at: float
    channel: str

    def record(self) -> dict[str, Any]:
        cards = [a.get("content") or {} for a in self.payload.get("attachments") or []
                 if isinstance(a, dict)]
        return {"channel": self.channel, "key": self.digest, "payload": self.payload,
                "locale": next((c.get("lang") for c in cards if c.get("lang")), None),
                "text": _plain(self.payload), "received_at": iso_utc(self.received_at)}


def _plain(payload: dict[str, Any]) -> str:
    """The words of a Slack or Teams message, block after block (tests read them)."""
    parts: list[str] = []
    for block in payload.get("blocks") or []:
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, dict):
            parts.append(str(text.get("text", "")))
    for attachment in payload.get("attachments") or []:
        for item in (attachment.get("content") or {}).get("body") or []:
            if isinstance(item, dict) and item.get("type") == "TextBlock":
                parts.append(str(item.get("text", "")))
    return "\n\n".join(parts)


class _Recorder(EmulatorServer):
    """What both webhooks share: a secret path, a JSON body, records keyed by body digest."""

    path_prefix: str = ""

    def __init__(self, secret_path: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.secret_path = secret_path
        self._lock = threading.Lock()
        self.clear_records()

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{self.path_prefix}{self.secret_path}"

    def route(self, request: Request) -> Route | None:
        if request.method == "POST" and request.path.startswith(self.path_prefix):
            return self._receive
        return None

    def authenticate(self, request: Request) -> Reply | None:
        if request.path != f"{self.path_prefix}{self.secret_path}":
            return self.unknown_webhook()
        return None

    def unknown_webhook(self) -> Reply:
        raise NotImplementedError

    def check(self, payload: dict[str, Any], size: int) -> Reply | None:
        raise NotImplementedError

    def ok_reply(self) -> Reply:
        raise NotImplementedError

    def _receive(self, request: Request) -> Reply:
        try:
            payload = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return self.check({}, len(request.body)) or _text(400, "invalid_payload")
        refused = self.check(payload, len(request.body))
        if refused is not None:
            return refused
        digest = hashlib.sha256(request.body).hexdigest()
        with self._lock:
            self._messages.append(_Message(digest, payload, time.time(), self.channel))
        return self.ok_reply()

    def _matching(self, key: str | None) -> list[_Message]:
        with self._lock:
            messages = list(self._messages)
        return messages if key is None else [m for m in messages if m.digest == key]

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        for message in self._matching(key):
            yield message.record()

    def key_count(self, key: str) -> int:
        return len(self._matching(key))

    def record_stats(self) -> dict[str, int]:
        messages = self._matching(None)
        same = Counter(m.digest for m in messages)
        return {"accepted_messages": len(messages), "recipients": len(messages),
                "duplicates": sum(n - 1 for n in same.values() if n > 1),
                "distinct_keys": len(same)}

    def clear_records(self) -> None:
        with self._lock:
            self._messages: list[_Message] = []


class SlackEmulator(_Recorder):
    channel = "slack"
    path_prefix = "/services/"
    channel_id = "C0CRISIS01"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 secret_path: str | None = None) -> None:
        super().__init__(secret_path or "T00000000/B00000000/" + hashlib.sha256(
            str(time.time_ns()).encode()).hexdigest()[:24], host=host, port=port)
        self.bot_token = "xoxb-" + hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:32]
        self._ts = 0

    # -- the Web API ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def route(self, request: Request) -> Route | None:
        api = {("POST", "/api/chat.postMessage"): self._post_message,
               ("POST", "/api/chat.update"): self._update,
               ("GET", "/api/conversations.history"): self._history,
               ("GET", "/api/conversations.replies"): self._replies}
        found = api.get((request.method, request.path))
        return found if found is not None else super().route(request)

    def authenticate(self, request: Request) -> Reply | None:
        if request.path.startswith("/api/"):
            if request.header("Authorization") != f"Bearer {self.bot_token}":
                return json_reply(200, {"ok": False, "error": "invalid_auth"})
            return None
        return super().authenticate(request)

    def _api_body(self, request: Request) -> dict[str, Any] | Reply:
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return json_reply(200, {"ok": False, "error": "invalid_json"})
        if not isinstance(body, dict):
            return json_reply(200, {"ok": False, "error": "invalid_json"})
        if body.get("channel") != self.channel_id:
            return json_reply(200, {"ok": False, "error": "channel_not_found"})
        refused = self.check(body, len(request.body))
        if refused is not None:
            return json_reply(200, {"ok": False, "error": refused.body.decode()})
        return body

    def _post_message(self, request: Request) -> Reply:
        body = self._api_body(request)
        if isinstance(body, Reply):
            return body
        thread = body.get("thread_ts")
        metadata = body.get("metadata") or {}
        key = str((metadata.get("event_payload") or {}).get("key") or
                  hashlib.sha256(request.body).hexdigest())
        with self._lock:
            if thread is not None and not any(m.payload.get("ts") == thread
                                              for m in self._messages):
                return json_reply(200, {"ok": False, "error": "thread_not_found"})
            self._ts += 1
            ts = f"{int(time.time())}.{self._ts:06d}"
            stored = {**body, "ts": ts}
            self._messages.append(_Message(key, stored, time.time(), self.channel))
        return json_reply(200, {"ok": True, "channel": self.channel_id, "ts": ts,
                                "message": {"ts": ts, "text": body.get("text")}})

    def _update(self, request: Request) -> Reply:
        body = self._api_body(request)
        if isinstance(body, Reply):
            return body
        with self._lock:
            for message in self._messages:
                if message.payload.get("ts") == body.get("ts"):
                    message.payload.update({"text": body.get("text"),
                                            "blocks": body.get("blocks"),
                                            "edited": int(message.payload.get("edited", 0)) + 1})
                    return json_reply(200, {"ok": True, "channel": self.channel_id,
                                            "ts": body.get("ts")})
        return json_reply(200, {"ok": False, "error": "message_not_found"})

    def _listed(self, request: Request, keep: Any) -> Reply:
        if request.query_one("channel") != self.channel_id:
            return json_reply(200, {"ok": False, "error": "channel_not_found"})
        metadata = request.query_one("include_all_metadata") in ("true", "1")
        with self._lock:
            chosen = [dict(m.payload) for m in reversed(self._messages) if keep(m.payload)]
        if not metadata:
            for message in chosen:
                message.pop("metadata", None)
        return json_reply(200, {"ok": True, "messages": chosen, "has_more": False})

    def _history(self, request: Request) -> Reply:
        return self._listed(request, lambda m: "ts" in m and not m.get("thread_ts"))

    def _replies(self, request: Request) -> Reply:
        ts = request.query_one("ts")
        return self._listed(request, lambda m: ts is not None and (
            m.get("ts") == ts or m.get("thread_ts") == ts))

    def thread(self, ts: str) -> list[dict[str, Any]]:
        """The first post ``ts`` (as it reads now) and its replies, oldest first."""
        with self._lock:
            return [dict(m.payload) for m in self._messages
                    if m.payload.get("ts") == ts or m.payload.get("thread_ts") == ts]

    def unknown_webhook(self) -> Reply:
        return _text(404, "no_service")

    def ok_reply(self) -> Reply:
        return _text(200, "ok")

    def check(self, payload: dict[str, Any], size: int) -> Reply | None:
        blocks = payload.get("blocks")
        if not payload.get("text") and not blocks:
            return _text(400, "no_text")
        if blocks is None:
            return None
        if not isinstance(blocks, list) or len(blocks) > 50:
            return _text(400, "invalid_blocks")
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            text = block.get("text") if isinstance(block, dict) else None
            value = text.get("text") if isinstance(text, dict) else None
            if kind == "header" and (not isinstance(text, dict)
                                     or text.get("type") != "plain_text" or not value
                                     or len(value) > 150):
                return _text(400, "invalid_blocks")
            if kind == "section" and (not value or len(value) > 3000):
                return _text(400, "invalid_blocks")
            if kind not in ("header", "section", "context", "divider", "actions"):
                return _text(400, "invalid_blocks")
        return None

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return _text(429, "rate_limited", (("Retry-After", str(max(1, window.retry_after_s))),))

    def error_reply(self, status: int) -> Reply:
        return _text(status, "rollup_error")

    def not_found_reply(self, request: Request) -> Reply:
        return _text(404, "no_service")

    def too_large_reply(self) -> Reply:
        return _text(413, "request_too_large")


class TeamsEmulator(_Recorder):
    channel = "teams"
    path_prefix = "/webhookb2/"
    max_body_bytes = 1024 * 1024

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 secret_path: str | None = None) -> None:
        super().__init__(secret_path or hashlib.sha256(
            str(time.time_ns()).encode()).hexdigest()[:32], host=host, port=port)

    def unknown_webhook(self) -> Reply:
        return json_reply(404, {"error": {"code": "WorkflowTriggerNotFound",
                                          "message": "The webhook is not found."}})

    def ok_reply(self) -> Reply:
        return Reply(202)

    def check(self, payload: dict[str, Any], size: int) -> Reply | None:
        if size > TEAMS_MAX_BYTES:
            return json_reply(413, {"error": {"code": "MessageTooLarge",
                                              "message": "The message is over 28 KB."}})
        problem = None
        attachments = payload.get("attachments")
        if payload.get("type") != "message":
            problem = "type must be message"
        elif not isinstance(attachments, list) or not attachments:
            problem = "attachments must hold the card"
        else:
            for attachment in attachments:
                card = attachment.get("content") if isinstance(attachment, dict) else None
                if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
                    problem = "contentType must be application/vnd.microsoft.card.adaptive"
                elif not isinstance(card, dict) or card.get("type") != "AdaptiveCard" or \
                        not card.get("version") or not isinstance(card.get("body"), list):
                    problem = "content must be an AdaptiveCard with a version and a body"
        if problem is not None:
            return json_reply(400, {"error": {"code": "BadRequest", "message": problem}})
        return None

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return json_reply(429, {"error": {"code": "TooManyRequests",
                                          "message": "Rate limit is exceeded."}},
                          (("Retry-After", str(max(1, window.retry_after_s))),))

    def error_reply(self, status: int) -> Reply:
        return json_reply(status, {"error": {"code": "ServiceError",
                                             "message": "injected error"}})

    def not_found_reply(self, request: Request) -> Reply:
        return self.unknown_webhook()

    def too_large_reply(self) -> Reply:
        return json_reply(413, {"error": {"code": "MessageTooLarge",
                                          "message": "The message is over 28 KB."}})
