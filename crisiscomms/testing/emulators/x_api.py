"""X (Twitter) API v2 emulator: ``POST /2/tweets`` and the reads reconciliation needs.

- ``POST /2/tweets`` ``{"text", "reply": {"in_reply_to_tweet_id"}}`` -> 201 with a 19-digit id;
  403 on duplicate content; 400 over 280 weighted characters; 401; 429 with
  ``x-rate-limit-*`` headers.
- ``GET /2/users/me`` and ``GET /2/users/<id>/tweets?max_results=N`` (newest first).

Authentication: ``Authorization: Bearer <token>`` or an OAuth 1.0a header whose
``oauth_consumer_key`` is the configured consumer key (the signature is not checked).

Idempotency keys: X has no client reference field, so for ``accepted(key)``,
``received(key)`` and ``/_emulator/keys/<key>`` a key matches a post's id or its exact text.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from crisiscomms.render.text_weight import X_MAX_WEIGHTED_LENGTH, x_weighted_length
from crisiscomms.testing.emulators.faults import Faults, RateWindow
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Headers,
    Reply,
    Request,
    Route,
    iso_utc,
    json_reply,
    parse_json,
)

TWEETS_PATH = "/2/tweets"
ME_PATH = "/2/users/me"
DEFAULT_USER_ID = "1460000000000000001"
DEFAULT_NAME = "Drill Account"
DEFAULT_USERNAME = "crisiscomms_drill"

_TWITTER_EPOCH_MS = 1288834974657
_USER_TWEETS_RE = re.compile(r"/2/users/([0-9]{1,19})/tweets")
_TWEET_ID_RE = re.compile(r"[0-9]{1,19}")
_OAUTH_CONSUMER_RE = re.compile(r'oauth_consumer_key="([^"]*)"')
_INVALID_REQUEST_TYPE = "https://api.twitter.com/2/problems/invalid-request"


def _problem(status: int, title: str, detail: str, headers: Headers = ()) -> Reply:
    return json_reply(
        status,
        {"title": title, "detail": detail, "type": "about:blank", "status": status},
        headers,
    )


def _invalid_request(message: str) -> Reply:
    return json_reply(
        400,
        {
            "errors": [{"message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": _INVALID_REQUEST_TYPE,
        },
    )


@dataclass(frozen=True, slots=True)
class _Post:
    id: str
    text: str
    reply_to: str | None
    received_at: float

    def record(self) -> dict[str, Any]:
        return {
            "channel": "x",
            "id": self.id,
            "text": self.text,
            "reply_to": self.reply_to,
            "received_at": iso_utc(self.received_at),
        }


class _SnowflakeIds:
    """Increasing 19-digit ids shaped like X's (time << 22 | worker << 12 | sequence)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._worker = secrets.randbelow(1024)

    def next(self) -> str:
        with self._lock:
            millis = int(time.time() * 1000) - _TWITTER_EPOCH_MS
            candidate = (millis << 22) | (self._worker << 12)
            self._last = max(candidate, self._last + 1)
            return str(self._last)


class _PostStore:
    """Posts of the one account, duplicate-content tracking; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._posts: list[_Post] = []
            self._by_id: dict[str, _Post] = {}
            self._by_text: dict[str, _Post] = {}
            self._attempts: dict[str, int] = {}

    def add_unless_duplicate(self, text: str, make_post: Callable[[], _Post]) -> _Post | None:
        """Record a post for ``text``; None (and an attempt counted) if it was posted before."""
        with self._lock:
            self._attempts[text] = self._attempts.get(text, 0) + 1
            if text in self._by_text:
                return None
            post = make_post()
            self._posts.append(post)
            self._by_id[post.id] = post
            self._by_text[text] = post
            return post

    def recent(self, limit: int) -> list[_Post]:
        with self._lock:
            return list(reversed(self._posts[-limit:])) if limit > 0 else []

    def matching(self, key: str | None) -> list[_Post]:
        with self._lock:
            if key is None:
                return list(self._posts)
            found = [p for p in (self._by_id.get(key), self._by_text.get(key)) if p is not None]
            return list(dict.fromkeys(found))

    def stats(self) -> dict[str, int]:
        with self._lock:
            posts = len(self._posts)
            return {
                "accepted_messages": posts,
                "recipients": posts,
                "duplicates": sum(1 for n in self._attempts.values() if n > 1),
                "distinct_keys": len(self._by_text),
            }


class XEmulator(EmulatorServer):
    """X API v2 post creation for one drill account."""

    channel = "x"
    max_body_bytes = 1024 * 1024

    def __init__(
        self,
        bearer_token: str,
        *,
        consumer_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        user_id: str = DEFAULT_USER_ID,
        username: str = DEFAULT_USERNAME,
        name: str = DEFAULT_NAME,
    ) -> None:
        if not bearer_token:
            raise ValueError("bearer_token must not be empty")
        super().__init__(host=host, port=port, faults=faults)
        self._bearer = f"Bearer {bearer_token}"
        self._consumer_key = consumer_key
        self.user_id = user_id
        self.username = username
        self.name = name
        self._ids = _SnowflakeIds()
        self._store = _PostStore()

    # ---- provider API ---------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path = request.path.rstrip("/")
        if request.method == "POST" and path == TWEETS_PATH:
            return self._create_tweet
        if request.method == "GET" and path == ME_PATH:
            return self._me
        if request.method == "GET" and _USER_TWEETS_RE.fullmatch(path):
            return self._user_tweets
        return None

    def not_found_reply(self, request: Request) -> Reply:
        return _problem(404, "Not Found Error", f"Could not find {request.path}.")

    def authenticate(self, request: Request) -> Reply | None:
        header = (request.header("Authorization") or "").strip()
        if header.startswith("Bearer "):
            if secrets.compare_digest(header.encode(), self._bearer.encode()):
                return None
        elif header.startswith("OAuth ") and self._consumer_key is not None:
            match = _OAUTH_CONSUMER_RE.search(header)
            if match and secrets.compare_digest(
                unquote(match.group(1)).encode(), self._consumer_key.encode()
            ):
                return None
        return _problem(401, "Unauthorized", "Unauthorized")

    def too_large_reply(self) -> Reply:
        return _problem(413, "Payload Too Large", "Request body too large.")

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return _problem(429, "Too Many Requests", "Too Many Requests", self._rate_headers(window))

    def error_reply(self, status: int) -> Reply:
        titles = {
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        title = titles.get(status, "Error")
        return _problem(status, title, title)

    def success_headers(self, window: RateWindow | None) -> Headers:
        return () if window is None else self._rate_headers(window)

    @staticmethod
    def _rate_headers(window: RateWindow) -> Headers:
        return (
            ("x-rate-limit-limit", str(window.limit)),
            ("x-rate-limit-remaining", str(max(0, window.remaining))),
            ("x-rate-limit-reset", str(window.reset_epoch)),
        )

    def _create_tweet(self, request: Request) -> Reply:
        try:
            body = parse_json(request.body)
        except ValueError:
            return _invalid_request("Request body is not valid JSON.")
        if not isinstance(body, dict):
            return _invalid_request("$: expected an object.")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _invalid_request("$.text: a non-empty string is required.")
        reply_to: str | None = None
        reply = body.get("reply")
        if reply is not None:
            target = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
            if not isinstance(target, str) or not _TWEET_ID_RE.fullmatch(target):
                return _invalid_request(
                    f"$.reply.in_reply_to_tweet_id: string [{target}] does not match "
                    "pattern ^[0-9]{1,19}$"
                )
            reply_to = target
        if x_weighted_length(text) > X_MAX_WEIGHTED_LENGTH:
            return _invalid_request(
                "Your Tweet text is too long. For more information on how X determines text "
                "length see https://github.com/twitter/twitter-text."
            )

        def make_post() -> _Post:
            return _Post(self._ids.next(), text, reply_to, time.time())

        post = self._store.add_unless_duplicate(text, make_post)
        if post is None:
            return json_reply(
                403,
                {
                    "detail": "You are not allowed to create a Tweet with duplicate content.",
                    "type": "about:blank",
                    "title": "Forbidden",
                    "status": 403,
                },
            )
        return json_reply(
            201, {"data": {"id": post.id, "text": post.text, "edit_history_tweet_ids": [post.id]}}
        )

    def _me(self, request: Request) -> Reply:
        return json_reply(
            200, {"data": {"id": self.user_id, "name": self.name, "username": self.username}}
        )

    def _user_tweets(self, request: Request) -> Reply:
        match = _USER_TWEETS_RE.fullmatch(request.path.rstrip("/"))
        assert match is not None
        raw = request.query_one("max_results")
        try:
            max_results = int(raw) if raw is not None else 10
        except ValueError:
            max_results = -1
        if not 5 <= max_results <= 100:
            return _invalid_request(
                f"The `max_results` query parameter value [{raw}] is not between 5 and 100"
            )
        if match.group(1) != self.user_id:
            return json_reply(200, {"meta": {"result_count": 0}})
        posts = self._store.recent(max_results)
        if not posts:
            return json_reply(200, {"meta": {"result_count": 0}})
        data = [
            {
                "id": p.id,
                "text": p.text,
                "created_at": iso_utc(p.received_at),
                "edit_history_tweet_ids": [p.id],
            }
            for p in posts
        ]
        return json_reply(
            200,
            {
                "data": data,
                "meta": {
                    "result_count": len(data),
                    "newest_id": data[0]["id"],
                    "oldest_id": data[-1]["id"],
                },
            },
        )

    # ---- records --------------------------------------------------------------------------

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        for post in self._store.matching(key):
            yield post.record()

    def key_count(self, key: str) -> int:
        return len(self._store.matching(key))

    def record_stats(self) -> dict[str, int]:
        return self._store.stats()

    def clear_records(self) -> None:
        self._store.clear()
