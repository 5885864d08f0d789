"""X (Twitter) API v2 emulator: ``POST /2/tweets`` and the reads reconciliation needs.

- ``POST /2/tweets`` ``{"text", "reply": {"in_reply_to_tweet_id"}}`` -> 201 with a 19-digit id;
  403 on duplicate content; 400 over 280 weighted characters; 401; 429 with
  ``x-rate-limit-*`` headers.
- ``GET /2/users/me`` and ``GET /2/users/<id>/tweets`` (newest first; ``max_results`` 5-100,
  ``pagination_token``/``meta.next_token``, ``since_id``, ``until_id``, and
  ``tweet.fields=referenced_tweets,created_at``).

Like X, a post's text is stored and returned as X shows it, not as it was sent: every link
(``https://…``, ``www.…`` or a bare domain such as ``example.com/x``) becomes a 23-character
``https://t.co/<10 characters>`` link, and ``&``, ``<``, ``>`` come back as HTML entities in the
API's JSON. So matching a post by the exact text we sent fails here as it does in production.
Duplicate content is judged on the text as sent.

Authentication: ``Authorization: Bearer <token>`` or an OAuth 1.0a header whose
``oauth_consumer_key`` is the configured consumer key (the signature is not checked).

Idempotency keys: X has no client reference field, so for ``accepted(key)``,
``received(key)`` and ``/_emulator/keys/<key>`` (the witness, not X's API) a key matches a
post's id or the exact text it was sent with.
"""

from __future__ import annotations

import html
import re
import secrets
import string
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
_TCO_PREFIX = "https://t.co/"
_TCO_ALPHABET = string.ascii_letters + string.digits
_LINK_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"]+"
    r"|(?<![@\w.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"(?:com|org|net|io|dev|app|co|info|biz|de|fr|es|jp|uk|eu|us)\b(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)
_TRAILING = ".,:;!?'\"*]}>)"
MAX_TIMELINE = 3200
"""X returns at most the 3,200 most recent posts of a user's timeline."""


def _tco() -> str:
    return _TCO_PREFIX + "".join(secrets.choice(_TCO_ALPHABET) for _ in range(10))


def shorten_links(text: str) -> str:
    """``text`` as X stores it: every link replaced by its own t.co link (trailing
    punctuation, and a closing parenthesis without its opening one, stay outside the link)."""
    out: list[str] = []
    position = 0
    for match in _LINK_RE.finditer(text):
        start, end = match.span()
        link = match.group(0)
        while link and (link[-1] in _TRAILING
                        and (link[-1] != ")" or link.count("(") < link.count(")"))):
            link, end = link[:-1], end - 1
        if not link or link.endswith(("://", "www.")):
            continue
        out.append(text[position:start] + _tco())
        position = end
    out.append(text[position:])
    return "".join(out)


def _as_api_text(text: str) -> str:
    """X's API escapes ``&``, ``<`` and ``>`` in a post's text."""
    return html.escape(text, quote=False)


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
    """As X shows it: links shortened to t.co."""
    reply_to: str | None
    received_at: float
    sent_text: str = ""
    """As it was sent (duplicate detection, the witness's ``key``)."""

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

    def timeline(self) -> list[_Post]:
        """Newest first, at most X's 3,200."""
        with self._lock:
            return list(reversed(self._posts[-MAX_TIMELINE:]))

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
            return _Post(self._ids.next(), shorten_links(text), reply_to, time.time(), text)

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
            201, {"data": {"id": post.id, "text": _as_api_text(post.text),
                           "edit_history_tweet_ids": [post.id]}}
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
        bounds: dict[str, int] = {}
        for name in ("since_id", "until_id"):
            value = request.query_one(name)
            if value is not None:
                if not _TWEET_ID_RE.fullmatch(value):
                    return _invalid_request(
                        f"The `{name}` query parameter value [{value}] is not valid")
                bounds[name] = int(value)
        fields = set(",".join(request.query.get("tweet.fields", [])).split(","))
        if match.group(1) != self.user_id:
            return json_reply(200, {"meta": {"result_count": 0}})
        posts = [p for p in self._store.timeline()
                 if int(p.id) > bounds.get("since_id", -1)
                 and int(p.id) < bounds.get("until_id", 1 << 64)]
        token = request.query_one("pagination_token")
        if token:
            older = [i for i, p in enumerate(posts) if p.id == token.removeprefix("p")]
            if not token.startswith("p") or not older:
                return _invalid_request(
                    f"The `pagination_token` query parameter value [{token}] is not valid")
            posts = posts[older[0]:]
        page, rest = posts[:max_results], posts[max_results:]
        if not page:
            return json_reply(200, {"meta": {"result_count": 0}})
        data = [self._tweet_object(p, fields) for p in page]
        meta: dict[str, Any] = {"result_count": len(data), "newest_id": data[0]["id"],
                                "oldest_id": data[-1]["id"]}
        if rest:
            meta["next_token"] = f"p{rest[0].id}"
        return json_reply(200, {"data": data, "meta": meta})

    @staticmethod
    def _tweet_object(post: _Post, fields: set[str]) -> dict[str, Any]:
        """A post as X's API v2 returns it (``created_at`` always, as before; the reply it
        answers when ``referenced_tweets`` is asked for)."""
        out: dict[str, Any] = {
            "id": post.id,
            "text": _as_api_text(post.text),
            "created_at": iso_utc(post.received_at),
            "edit_history_tweet_ids": [post.id],
        }
        if "referenced_tweets" in fields and post.reply_to is not None:
            out["referenced_tweets"] = [{"type": "replied_to", "id": post.reply_to}]
        return out

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
