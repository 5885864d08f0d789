"""Mastodon REST API emulator: what ``MastodonChannel`` (Mastodon.py) calls, answered the way a
stock Mastodon 4 server answers.

- ``POST /api/v1/statuses`` (form or JSON: ``status``, ``in_reply_to_id``, ``language``,
  ``visibility``) with ``Authorization: Bearer <token>``: 200 with the Status entity (``id`` a
  snowflake-like string, ``content`` as HTML: ``<p>`` paragraphs, ``<br />``, links as
  ``<a href>`` with the URL split into invisible/ellipsis spans). ``Idempotency-Key``: the same
  key answers the status it created, and creates nothing (as Mastodon does for an hour).
  422 ``{"error": "Validation failed: Text character limit of 500 exceeded"}`` when the text is
  over 500 characters counted as Mastodon counts (grapheme clusters, every URL 23); 404 when
  ``in_reply_to_id`` is unknown; 401 without the token.
- ``GET /api/v1/accounts/verify_credentials``, ``GET /api/v1/accounts/<id>/statuses``
  (newest first, ``since_id``, ``limit`` up to 40) and ``GET /api/v1/statuses/<id>``.
- ``POST /api/v2/media`` (and ``/api/v1/media``; multipart ``file`` and ``description``) → a
  MediaAttachment; ``media_ids[]`` on a status attach it (422 for an unknown id, or for a
  description over 1,500 characters). The record of a status lists each attachment's
  ``description`` (the alt text). ``GET /_emulator/media?url=U`` answers a small PNG for any
  ``U``: drills fetch a post's image through it (``media_proxy_url``).
- Every answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
  ``X-RateLimit-Reset`` (an ISO 8601 time, as Mastodon sends it); over the injected rate limit,
  429 ``{"error": "Too many requests"}`` with the same headers.

The witness: ``received(key)`` and ``/_emulator/keys/<key>`` match statuses whose
Idempotency-Key is ``key`` or starts with ``key-`` (one per thread part); ``duplicates`` counts
statuses posted twice with the same text in answer to the same status.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from crisiscomms.render.text_length import MASTODON_URL_LENGTH, counted_length, url_spans
from crisiscomms.testing.emulators.faults import RateWindow
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Headers,
    Reply,
    Request,
    Route,
    iso_utc,
    json_reply,
)

MAX_CHARACTERS = 500
ACCOUNT_ID = "109000000000000001"
USERNAME = "status"
_STATUSES = "/api/v1/statuses"
_ACCOUNT_STATUSES = re.compile(r"^/api/v1/accounts/([0-9]+)/statuses$")
_STATUS = re.compile(r"^/api/v1/statuses/([0-9]+)$")
MAX_DESCRIPTION = 1500
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
"""A 1x1 PNG: the image every ``/_emulator/media`` request gets."""


def status_html(text: str) -> str:
    """``text`` as Mastodon renders a plain-text status: escaped, paragraphs and line breaks,
    each link an anchor whose visible text is split into spans (the full URL still in it)."""
    out: list[str] = []
    position = 0
    for start, end in url_spans(text):
        url = text[start:end]
        scheme, _, rest = url.partition("://")
        out.append(html.escape(text[position:start]))
        out.append(f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener">'
                   f'<span class="invisible">{html.escape(scheme)}://</span>'
                   f'<span class="ellipsis">{html.escape(rest[:30])}</span>'
                   f'<span class="invisible">{html.escape(rest[30:])}</span></a>')
        position = end
    out.append(html.escape(text[position:]))
    body = "".join(out)
    return "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in body.split("\n\n"))


@dataclass(frozen=True)
class _Status:
    id: str
    text: str
    in_reply_to_id: str | None
    language: str | None
    visibility: str
    key: str | None
    created_at: float
    media: tuple[dict[str, Any], ...] = field(default=())

    def entity(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id, "uri": f"{base_url}/users/{USERNAME}/statuses/{self.id}",
            "url": f"{base_url}/@{USERNAME}/{self.id}", "created_at": iso_utc(self.created_at),
            "content": status_html(self.text), "in_reply_to_id": self.in_reply_to_id,
            "in_reply_to_account_id": ACCOUNT_ID if self.in_reply_to_id else None,
            "language": self.language, "visibility": self.visibility, "sensitive": False,
            "spoiler_text": "", "media_attachments": list(self.media), "mentions": [],
            "tags": [],
            "emojis": [], "reblogs_count": 0, "favourites_count": 0, "replies_count": 0,
            "account": _account(base_url), "reblog": None, "poll": None, "card": None,
        }

    def record(self) -> dict[str, Any]:
        return {"channel": "mastodon", "id": self.id, "key": self.key, "text": self.text,
                "reply_to": self.in_reply_to_id, "language": self.language,
                "locale": self.language, "alt": [m.get("description") for m in self.media],
                "received_at": iso_utc(self.created_at)}


def _account(base_url: str) -> dict[str, Any]:
    return {"id": ACCOUNT_ID, "username": USERNAME, "acct": USERNAME,
            "display_name": "Status", "url": f"{base_url}/@{USERNAME}", "locked": False,
            "bot": True, "created_at": "2023-01-01T00:00:00.000Z", "note": "",
            "avatar": "", "header": "", "followers_count": 0, "following_count": 0,
            "statuses_count": 0, "emojis": [], "fields": []}


def _multipart(request: Request) -> dict[str, tuple[bytes, str]]:
    """A multipart/form-data body: field name → (bytes, content type)."""
    head = f"Content-Type: {request.header('Content-Type')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    fields: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (payload, part.get_content_type())
    return fields


def _media_ids(request: Request) -> list[str]:
    content_type = (request.header("Content-Type") or "").lower()
    if "json" in content_type:
        data = json.loads(request.body or b"{}")
        return [str(i) for i in (data.get("media_ids") or [])]
    parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    return parsed.get("media_ids[]", []) + parsed.get("media_ids", [])


def _form(request: Request) -> dict[str, str]:
    content_type = (request.header("Content-Type") or "").lower()
    if "json" in content_type:
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("a JSON object")
        return {str(k): "" if v is None else str(v) for k, v in data.items()}
    parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


class MastodonEmulator(EmulatorServer):
    channel = "mastodon"

    def __init__(self, token: str, *, host: str = "127.0.0.1", port: int = 0,
                 rate_limit: int = 300) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.rate_limit = rate_limit
        self._lock = threading.Lock()
        self._next = 109_000_000_000_000_100
        self.clear_records()

    # -- the provider -------------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path = request.path.rstrip("/")
        if request.method == "POST" and path == _STATUSES:
            return self._create
        if request.method == "POST" and path in ("/api/v1/media", "/api/v2/media"):
            return self._media
        if request.method == "GET" and path == "/api/v1/accounts/verify_credentials":
            return lambda r: json_reply(200, _account(self.url))
        if request.method == "GET" and _ACCOUNT_STATUSES.match(path):
            return self._account_statuses
        if request.method == "GET" and _STATUS.match(path):
            return self._status
        return None

    def authenticate(self, request: Request) -> Reply | None:
        if request.header("Authorization") != f"Bearer {self.token}":
            return json_reply(401, {"error": "The access token is invalid"})
        return None

    def _rate_headers(self, window: RateWindow) -> Headers:
        reset = datetime.fromtimestamp(window.reset_epoch, UTC).isoformat(timespec="milliseconds")
        return (("X-RateLimit-Limit", str(window.limit)),
                ("X-RateLimit-Remaining", str(max(0, window.remaining))),
                ("X-RateLimit-Reset", reset.replace("+00:00", "Z")))

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return json_reply(429, {"error": "Too many requests"}, self._rate_headers(window))

    def success_headers(self, window: RateWindow | None) -> Headers:
        if window is None:
            moment = int(time.time()) + 3 * 3600
            window = RateWindow(self.rate_limit, self.rate_limit - 1, moment, 0)
        return self._rate_headers(window)

    def error_reply(self, status: int) -> Reply:
        return json_reply(status, {"error": "Mastodon emulator: injected error"})

    def not_found_reply(self, request: Request) -> Reply:
        return json_reply(404, {"error": "Record not found"})

    def too_large_reply(self) -> Reply:
        return json_reply(413, {"error": "Request entity too large"})

    def control(self, request: Request, name: str) -> Reply | None:
        if request.method == "GET" and name == "media":
            return Reply(200, PNG, (), "image/png")
        return None

    def _media(self, request: Request) -> Reply:
        try:
            fields = _multipart(request)
        except (ValueError, TypeError):
            fields = {}
        if "file" not in fields:
            return json_reply(422, {"error": "Validation failed: File can't be blank"})
        data, mime = fields["file"]
        description = fields.get("description", (b"", ""))[0].decode("utf-8", "replace")
        if len(description) > MAX_DESCRIPTION:
            return json_reply(422, {"error": "Validation failed: Description is too long "
                                             f"(maximum is {MAX_DESCRIPTION} characters)"})
        with self._lock:
            self._next += 1
            media_id = str(self._next)
            media: dict[str, Any] = {
                     "id": media_id, "type": "image" if mime.startswith("image/")
                     else "unknown", "url": f"{self.url}/media/{self._next}",
                     "preview_url": f"{self.url}/media/{self._next}/small",
                     "description": description or None, "size": len(data),
                     "mime_type": mime}
            self._media_store[media_id] = media
        return json_reply(200, {k: v for k, v in media.items() if k not in ("size",
                                                                               "mime_type")})

    def _create(self, request: Request) -> Reply:
        try:
            form = _form(request)
        except (ValueError, UnicodeDecodeError):
            return json_reply(400, {"error": "The request body is not valid"})
        text = form.get("status", "")
        if not text.strip():
            return json_reply(422, {"error": "Validation failed: Text can't be blank"})
        if counted_length(text, url_length=MASTODON_URL_LENGTH) > MAX_CHARACTERS:
            return json_reply(422, {"error": "Validation failed: Text character limit of "
                                             f"{MAX_CHARACTERS} exceeded"})
        reply_to = form.get("in_reply_to_id") or None
        key = request.header("Idempotency-Key")
        with self._lock:
            if key is not None and key in self._by_key:
                return json_reply(200, self._by_key[key].entity(self.url))
            if reply_to is not None and reply_to not in self._by_id:
                return json_reply(404, {"error": "Record not found"})
            try:
                media = tuple(self._media_store[i] for i in _media_ids(request))
            except KeyError:
                return json_reply(422, {"error": "Validation failed: media not found"})
            self._next += 1
            status = _Status(str(self._next), text, reply_to, form.get("language") or None,
                             form.get("visibility") or "public", key, time.time(), media)
            self._statuses.append(status)
            self._by_id[status.id] = status
            if key is not None:
                self._by_key[key] = status
        return json_reply(200, status.entity(self.url))

    def _account_statuses(self, request: Request) -> Reply:
        match = _ACCOUNT_STATUSES.match(request.path.rstrip("/"))
        assert match is not None
        if match.group(1) != ACCOUNT_ID:
            return json_reply(404, {"error": "Record not found"})
        try:
            limit = min(40, max(1, int(request.query_one("limit") or 20)))
        except ValueError:
            return json_reply(400, {"error": "limit must be a number"})
        since = request.query_one("since_id")
        with self._lock:
            statuses = list(reversed(self._statuses))
        if since:
            statuses = [s for s in statuses if int(s.id) > int(since)]
        return json_reply(200, [s.entity(self.url) for s in statuses[:limit]])

    def _status(self, request: Request) -> Reply:
        match = _STATUS.match(request.path.rstrip("/"))
        assert match is not None
        with self._lock:
            status = self._by_id.get(match.group(1))
        if status is None:
            return json_reply(404, {"error": "Record not found"})
        return json_reply(200, status.entity(self.url))

    # -- the witness --------------------------------------------------------------------------

    def _matching(self, key: str | None) -> list[_Status]:
        with self._lock:
            statuses = list(self._statuses)
        if key is None:
            return statuses
        return [s for s in statuses
                if s.key is not None and (s.key == key or s.key.startswith(key + "-"))]

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        for status in self._matching(key):
            yield status.record()

    def key_count(self, key: str) -> int:
        return len(self._matching(key))

    def record_stats(self) -> dict[str, int]:
        statuses = self._matching(None)
        same = Counter((s.text, s.in_reply_to_id) for s in statuses)
        return {"accepted_messages": len(statuses), "recipients": len(statuses),
                "duplicates": sum(n - 1 for n in same.values() if n > 1),
                "distinct_keys": len({s.key for s in statuses if s.key})}

    def clear_records(self) -> None:
        with self._lock:
            self._statuses: list[_Status] = []
            self._by_id: dict[str, _Status] = {}
            self._by_key: dict[str, _Status] = {}
            self._media_store: dict[str, dict[str, Any]] = {}
