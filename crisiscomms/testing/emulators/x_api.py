"""X (Twitter) API v2 emulator: ``POST /2/tweets``, the reads reconciliation needs, and the
reads listening needs (mentions, conversation search) with a crowd that posts.

- ``POST /2/tweets`` ``{"text", "reply": {"in_reply_to_tweet_id"}}`` -> 201 with a 19-digit id;
  403 on duplicate content; 400 over 280 weighted characters; 401; 429 with
  ``x-rate-limit-*`` headers.
- ``GET /2/users/me`` and ``GET /2/users/<id>/tweets`` (newest first; ``max_results`` 5-100,
  ``pagination_token``/``meta.next_token``, ``since_id``, ``until_id``, and
  ``tweet.fields=referenced_tweets,created_at``).
- Listening: ``GET /2/users/<id>/mentions`` (newest first; ``since_id``, ``until_id``,
  ``max_results`` 5-100, ``pagination_token``; ``tweet.fields`` conversation_id,
  in_reply_to_user_id, referenced_tweets, created_at, lang, author_id; ``expansions=author_id``
  fills ``includes.users``) and ``GET /2/tweets/search/recent`` for ``conversation_id:<id>``
  queries (terms joined by ``OR``; ``since_id``, ``max_results`` 10-100, ``next_token``). Both
  answer with ``x-rate-limit-limit/-remaining/-reset`` on every answer, from a per-endpoint
  budget (:meth:`XEmulator.set_read_budget`, default X's 450 per 15 minutes), and 429 with
  ``x-rate-limit-reset`` once it is spent; :meth:`XEmulator.reads` lists when each read came.
- The crowd: other users' posts, added with :meth:`XEmulator.add_post` or
  ``POST /_emulator/posts`` (``{"text", "username", "reply_to", "mention", "lang"}``): a reply
  gets the ``@handle`` of the post it answers put in front (as X's clients do), so a reply to
  one of our posts is also a mention of us; ``mention: false`` leaves the text as given. Crowd
  posts are not the account's posts: stats, records and keys count ours only.

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
import math
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
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
_MENTIONS_RE = re.compile(r"/2/users/([0-9]{1,19})/mentions")
SEARCH_PATH = "/2/tweets/search/recent"
POSTS_CONTROL_PATH = "/_emulator/posts"
_CONVERSATION_TERM_RE = re.compile(r"\(?\s*conversation_id:([0-9]{1,19})\s*\)?")
_USERNAME_RE = re.compile(r"[A-Za-z0-9_]{1,15}")
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
    conversation_id: str = ""
    """The id of the thread's first post (its own id for a post that answers none)."""

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


@dataclass(frozen=True, slots=True)
class XUser:
    """Another account: the author of crowd posts."""

    id: str
    username: str
    name: str


@dataclass(frozen=True, slots=True)
class _CrowdPost:
    id: str
    text: str
    author: XUser
    reply_to: str | None
    in_reply_to_user_id: str | None
    conversation_id: str
    lang: str | None
    created_at: float
    mentions_us: bool


class _CrowdStore:
    """Other users' posts, oldest first; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._posts: list[_CrowdPost] = []
            self._by_id: dict[str, _CrowdPost] = {}
            self._users: dict[str, XUser] = {}

    def user(self, username: str, name: str | None, make_id: Callable[[], str]) -> XUser:
        with self._lock:
            key = username.casefold()
            found = self._users.get(key)
            if found is None:
                found = XUser(make_id(), username, name or username)
                self._users[key] = found
            return found

    def add(self, post: _CrowdPost) -> None:
        with self._lock:
            self._posts.append(post)
            self._by_id[post.id] = post

    def get(self, post_id: str) -> _CrowdPost | None:
        with self._lock:
            return self._by_id.get(post_id)

    def newest_first(self) -> list[_CrowdPost]:
        with self._lock:
            return list(reversed(self._posts))

    def __len__(self) -> int:
        with self._lock:
            return len(self._posts)


@dataclass
class _ReadBudget:
    """X's per-endpoint rate limit: ``limit`` requests per fixed window of ``window_s``."""

    limit: int
    window_s: float
    _start: float = 0.0
    _used: int = 0

    def take(self, now: float) -> tuple[bool, Headers]:
        """Count one request at ``now`` (epoch seconds): (allowed, the rate-limit headers)."""
        if self._used == 0 or now >= self._start + self.window_s:
            self._start, self._used = now, 0
        allowed = self._used < self.limit
        if allowed:
            self._used += 1
        reset = math.ceil(self._start + self.window_s)
        return allowed, (("x-rate-limit-limit", str(self.limit)),
                         ("x-rate-limit-remaining", str(self.limit - self._used)),
                         ("x-rate-limit-reset", str(reset)))


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """One listening read as the emulator saw it (tests check when requests came)."""

    endpoint: str
    """``mentions`` or ``search``."""
    at: float
    """Epoch seconds."""
    status: int


READ_ENDPOINTS = ("mentions", "search")
DEFAULT_READ_LIMIT = 450
DEFAULT_READ_WINDOW_S = 900.0
"""X's app limits for mentions and recent search: 450 requests per 15 minutes."""


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
        self._crowd = _CrowdStore()
        self._reads_lock = threading.Lock()
        self._budgets = {e: _ReadBudget(DEFAULT_READ_LIMIT, DEFAULT_READ_WINDOW_S)
                         for e in READ_ENDPOINTS}
        self._reads: list[ReadRecord] = []

    # ---- provider API ---------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path = request.path.rstrip("/")
        if request.method == "POST" and path == TWEETS_PATH:
            return self._create_tweet
        if request.method == "GET" and path == ME_PATH:
            return self._me
        if request.method == "GET" and _USER_TWEETS_RE.fullmatch(path):
            return self._user_tweets
        if request.method == "GET" and _MENTIONS_RE.fullmatch(path):
            return self._mentions
        if request.method == "GET" and path == SEARCH_PATH:
            return self._search
        return None

    def handle(self, request: Request) -> Reply:
        """The crowd's control endpoint (``POST /_emulator/posts``), then the shared ones."""
        if request.method == "POST" and request.path.rstrip("/") == POSTS_CONTROL_PATH:
            return self._control_post(request)
        return super().handle(request)

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

        conversation = self._conversation_of(reply_to)

        def make_post() -> _Post:
            post_id = self._ids.next()
            return _Post(post_id, shorten_links(text), reply_to, time.time(), text,
                         conversation or post_id)

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

    # ---- listening: mentions, conversation search, the crowd ---------------------------------

    def set_read_budget(self, limit: int = DEFAULT_READ_LIMIT,
                        window_s: float = DEFAULT_READ_WINDOW_S) -> None:
        """Each listening endpoint (mentions, search) allows ``limit`` requests per fixed
        window of ``window_s`` seconds from now on, then answers 429 until the window ends."""
        if limit < 0 or window_s <= 0:
            raise ValueError("limit must not be negative and window_s must be positive")
        with self._reads_lock:
            self._budgets = {e: _ReadBudget(limit, window_s) for e in READ_ENDPOINTS}

    def reads(self, endpoint: str | None = None) -> list[ReadRecord]:
        """The listening reads received (authorised ones), oldest first."""
        with self._reads_lock:
            return [r for r in self._reads if endpoint is None or r.endpoint == endpoint]

    def add_post(self, text: str, *, username: str, name: str | None = None,
                 reply_to: str | None = None, mention: bool | None = None,
                 lang: str | None = None) -> dict[str, Any]:
        """A post by another user (``username``), as the crowd writes it: replying to
        ``reply_to`` (one of ours or another crowd post) or not. Like X's clients, a reply
        starts with the ``@handle`` of the author it answers unless ``mention`` is False;
        ``mention=True`` on a post that answers nothing puts our ``@handle`` in front.
        Returns the post as the API shows it (every field). Raises ValueError on bad input."""
        if username.casefold() == self.username.casefold():
            raise ValueError("username: that is our own account; post through POST /2/tweets")
        if not _USERNAME_RE.fullmatch(username):
            raise ValueError("username: 1-15 letters, digits or underscores")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text: a non-empty string is required")
        # every character weighs 2 at most, but a link always 23: only then count the slow way
        if (2 * len(text) > X_MAX_WEIGHTED_LENGTH or "." in text) \
                and x_weighted_length(text) > X_MAX_WEIGHTED_LENGTH:
            raise ValueError("text: over 280 weighted characters")
        answered_user: XUser | None = None
        if reply_to is not None:
            if not _TWEET_ID_RE.fullmatch(reply_to):
                raise ValueError("reply_to: a post id of 1-19 digits")
            answered_user = self._author_of(reply_to)
            if answered_user is None:
                raise ValueError(f"reply_to: no post {reply_to}")
        handle = (answered_user.username if answered_user is not None
                  else self.username if mention else None)
        if handle is not None and mention is not False \
                and not text.casefold().startswith(f"@{handle}".casefold()):
            text = f"@{handle} {text}"
        author = self._crowd.user(username, name, self._ids.next)
        post_id = self._ids.next()
        post = _CrowdPost(
            id=post_id, text=shorten_links(text), author=author, reply_to=reply_to,
            in_reply_to_user_id=None if answered_user is None else answered_user.id,
            conversation_id=self._conversation_of(reply_to) or post_id, lang=lang,
            created_at=time.time(),
            mentions_us=(answered_user is not None and answered_user.id == self.user_id)
            or re.search(rf"(?<!\w)@{re.escape(self.username)}(?!\w)", text,
                         re.IGNORECASE) is not None,
        )
        self._crowd.add(post)
        return self._crowd_object(post, _ALL_FIELDS)

    def crowd_size(self) -> int:
        return len(self._crowd)

    def _me_user(self) -> XUser:
        return XUser(self.user_id, self.username, self.name)

    def _author_of(self, post_id: str) -> XUser | None:
        if any(p.id == post_id for p in self._store.matching(post_id)):
            return self._me_user()
        crowd = self._crowd.get(post_id)
        return None if crowd is None else crowd.author

    def _conversation_of(self, post_id: str | None) -> str | None:
        if post_id is None:
            return None
        ours = [p for p in self._store.matching(post_id) if p.id == post_id]
        if ours:
            return ours[0].conversation_id or ours[0].id
        crowd = self._crowd.get(post_id)
        return None if crowd is None else crowd.conversation_id

    def _control_post(self, request: Request) -> Reply:
        try:
            body = parse_json(request.body)
        except ValueError:
            return json_reply(400, {"error": "body: not valid JSON"})
        if not isinstance(body, dict):
            return json_reply(400, {"error": "body: expected an object"})
        unknown = sorted(set(body) - {"text", "username", "name", "reply_to", "mention", "lang"})
        if unknown:
            return json_reply(400, {"error": f"unknown fields: {', '.join(unknown)}"})
        try:
            post = self.add_post(
                str(body.get("text") or ""), username=str(body.get("username") or ""),
                name=_opt_str(body.get("name")), reply_to=_opt_str(body.get("reply_to")),
                mention=body.get("mention") if isinstance(body.get("mention"), bool) else None,
                lang=_opt_str(body.get("lang")))
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})
        return json_reply(201, {"data": post})

    def _read(self, endpoint: str) -> tuple[Reply | None, Headers]:
        """Count one listening read: (a 429 when the budget is spent, the headers)."""
        now = time.time()
        with self._reads_lock:
            allowed, headers = self._budgets[endpoint].take(now)
            self._reads.append(ReadRecord(endpoint, now, 200 if allowed else 429))
        if allowed:
            return None, headers
        return _problem(429, "Too Many Requests", "Too Many Requests", headers), headers

    def _mentions(self, request: Request) -> Reply:
        match = _MENTIONS_RE.fullmatch(request.path.rstrip("/"))
        assert match is not None
        limited, headers = self._read("mentions")
        if limited is not None:
            return limited
        page = _page_params(request, "pagination_token", low=5, default=10)
        if isinstance(page, Reply):
            return page.with_headers(headers)
        if match.group(1) != self.user_id:
            return json_reply(200, {"meta": {"result_count": 0}}, headers)
        posts = [p for p in self._crowd.newest_first() if p.mentions_us]
        return self._page(request, posts, page, "pagination_token").with_headers(headers)

    def _search(self, request: Request) -> Reply:
        limited, headers = self._read("search")
        if limited is not None:
            return limited
        query = (request.query_one("query") or "").strip()
        terms = [t.strip() for t in re.split(r"\s+OR\s+", query)] if query else []
        found = [_CONVERSATION_TERM_RE.fullmatch(t) for t in terms]
        if not terms or not all(found) or len(query) > 512:
            return _invalid_request(
                "query: this emulator answers conversation_id:<id> terms joined by OR "
                "(at most 512 characters)").with_headers(headers)
        wanted = {m.group(1) for m in found if m is not None}
        page = _page_params(request, "next_token", low=10, default=10)
        if isinstance(page, Reply):
            return page.with_headers(headers)
        posts: list[_CrowdPost] = [p for p in self._crowd.newest_first()
                                   if p.conversation_id in wanted]
        ours = [self._as_crowd(p) for p in self._store.timeline()
                if (p.conversation_id or p.id) in wanted]
        merged = sorted([*posts, *ours], key=lambda p: int(p.id), reverse=True)
        return self._page(request, merged, page, "next_token").with_headers(headers)

    def _as_crowd(self, post: _Post) -> _CrowdPost:
        """One of our posts in the shape of a crowd post (search answers both)."""
        parent = None if post.reply_to is None else self._author_of(post.reply_to)
        return _CrowdPost(post.id, post.text, self._me_user(), post.reply_to,
                          None if parent is None else parent.id,
                          post.conversation_id or post.id, None, post.received_at, False)

    def _page(self, request: Request, posts: list[_CrowdPost], page: _PageParams,
              token_name: str) -> Reply:
        posts = [p for p in posts if page.since_id < int(p.id) < page.until_id]
        if page.token:
            start = [i for i, p in enumerate(posts) if p.id == page.token.removeprefix("p")]
            if not page.token.startswith("p") or not start:
                return _invalid_request(
                    f"The `{token_name}` query parameter value [{page.token}] is not valid")
            posts = posts[start[0]:]
        shown, rest = posts[:page.max_results], posts[page.max_results:]
        if not shown:
            return json_reply(200, {"meta": {"result_count": 0}})
        fields = set(",".join(request.query.get("tweet.fields", [])).split(","))
        expansions = set(",".join(request.query.get("expansions", [])).split(","))
        body: dict[str, Any] = {"data": [self._crowd_object(p, fields) for p in shown]}
        if "author_id" in expansions:
            users = {p.author.id: p.author for p in shown}
            body["includes"] = {"users": [{"id": u.id, "name": u.name, "username": u.username}
                                          for u in users.values()]}
        meta: dict[str, Any] = {"result_count": len(shown), "newest_id": shown[0].id,
                                "oldest_id": shown[-1].id}
        if rest:
            meta["next_token"] = f"p{rest[0].id}"
        body["meta"] = meta
        return json_reply(200, body)

    @staticmethod
    def _crowd_object(post: _CrowdPost, fields: AbstractSet[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": post.id, "text": _as_api_text(post.text),
                               "edit_history_tweet_ids": [post.id]}
        if "author_id" in fields:
            out["author_id"] = post.author.id
        if "conversation_id" in fields:
            out["conversation_id"] = post.conversation_id
        if "created_at" in fields:
            out["created_at"] = iso_utc(post.created_at)
        if "lang" in fields:
            out["lang"] = post.lang or "und"
        if "in_reply_to_user_id" in fields and post.in_reply_to_user_id is not None:
            out["in_reply_to_user_id"] = post.in_reply_to_user_id
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
        self._crowd.clear()
        with self._reads_lock:
            self._reads = []
            self._budgets = {e: _ReadBudget(DEFAULT_READ_LIMIT, DEFAULT_READ_WINDOW_S)
                             for e in READ_ENDPOINTS}


_ALL_FIELDS = frozenset({"author_id", "conversation_id", "created_at", "lang",
                         "in_reply_to_user_id", "referenced_tweets"})


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class _PageParams:
    max_results: int
    since_id: int
    until_id: int
    token: str | None


def _page_params(request: Request, token_name: str, *, low: int,
                 default: int) -> _PageParams | Reply:
    """``max_results`` (``low``-100), ``since_id``, ``until_id`` and the page token, or X's 400."""
    raw = request.query_one("max_results")
    try:
        max_results = int(raw) if raw is not None else default
    except ValueError:
        max_results = -1
    if not low <= max_results <= 100:
        return _invalid_request(
            f"The `max_results` query parameter value [{raw}] is not between {low} and 100")
    bounds = {"since_id": -1, "until_id": 1 << 64}
    for name in bounds:
        value = request.query_one(name)
        if value is not None:
            if not _TWEET_ID_RE.fullmatch(value):
                return _invalid_request(
                    f"The `{name}` query parameter value [{value}] is not valid")
            bounds[name] = int(value)
    return _PageParams(max_results, bounds["since_id"], bounds["until_id"],
                       request.query_one(token_name) or None)
