"""Reading X for listening: tweepy v2 ``Client`` against ``settings.x_base_url``, with X's
rate-limit headers honoured.

Decisions:

- **tweepy, pointed at the base URL.** tweepy hard-codes ``https://api.twitter.com``; the
  client's session is a ``requests.Session`` that rewrites that prefix to ``base_url`` and adds
  a timeout to every request (the same technique as ``channels/x_social.py``, which the domain
  may not import; see docs/architecture.md "The import rule"). OAuth 1.0a user context when all
  four values are set, else the bearer token.
- **Headers are read.** ``return_type=requests.Response``, so each answer's
  ``x-rate-limit-remaining``/``x-rate-limit-reset`` are seen, not only a 429's.
- **Never hammer, never block forever.** :class:`RateGate` remembers, per endpoint, when X said
  the budget comes back (a 429, or ``remaining: 0`` on a success); until then a call raises
  :class:`RateLimited` *without a request*. A reset further away than :data:`MAX_WAIT_S` (a
  skewed clock, a bogus header) is clamped to it, and a 429 without a reset waits
  :data:`DEFAULT_429_WAIT_S`. Nothing sleeps here: the poller decides when to come back.
- **Secrets stay out of logs.** tweepy logs request headers (the bearer token) at DEBUG level;
  a filter on its logger blanks authorization values. Error messages carry the status and X's
  title, never a header.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import requests
import tweepy
from pydantic import SecretStr

from crisiscomms.core.settings import Settings
from crisiscomms.core.x_http import X_API_HOST, RebasedSession, install_x_redaction

TWEET_FIELDS = ("author_id", "conversation_id", "created_at", "in_reply_to_user_id", "lang",
                "referenced_tweets")
"""What listening asks of every post: who, which thread, when, in which language, answering
what."""
ME = "me"
MENTIONS = "mentions"
SEARCH = "search"
ENDPOINTS = (ME, MENTIONS, SEARCH)
MAX_WAIT_S = 15 * 60.0
"""X's rate windows are 15 minutes: no reset is believed further away than that."""
DEFAULT_429_WAIT_S = 60.0
"""A 429 without ``x-rate-limit-reset`` waits this long."""

log = logging.getLogger(__name__)

class XReadError(Exception):
    """X could not be read (unreachable, 5xx, refused credentials, an answer that is not X's).
    The message is safe to log: status and X's own title, no header."""


class RateLimited(Exception):
    """The endpoint's budget is spent until ``until`` (epoch seconds)."""

    def __init__(self, endpoint: str, until: float) -> None:
        super().__init__(f"X {endpoint}: rate limit until {_iso(until)}")
        self.endpoint = endpoint
        self.until = until


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


@dataclass
class RateGate:
    """Per endpoint, when the next request may go (epoch seconds). Thread-safe."""

    clock: Callable[[], float] = time.time
    _not_before: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def blocked_until(self, endpoint: str) -> float | None:
        """When ``endpoint`` opens again, or None when a request may go now."""
        with self._lock:
            until = self._not_before.get(endpoint)
        return until if until is not None and until > self.clock() else None

    def close(self, endpoint: str, until: float) -> None:
        """Keep ``endpoint`` closed until ``until`` at least (a reset learnt elsewhere: another
        process, before a restart), clamped to :data:`MAX_WAIT_S` from now."""
        now = self.clock()
        if until <= now:
            return
        with self._lock:
            self._not_before[endpoint] = max(self._not_before.get(endpoint, 0.0),
                                             min(until, now + MAX_WAIT_S))

    def observe(self, endpoint: str, headers: Mapping[str, str], *, limited: bool) -> float | None:
        """Learn from an answer's headers; returns the time the endpoint is closed until."""
        now = self.clock()
        reset = _number(headers.get("x-rate-limit-reset"))
        remaining = _number(headers.get("x-rate-limit-remaining"))
        spent = remaining is not None and remaining <= 0
        if not (limited or spent):
            return None
        until = reset if reset is not None else now + DEFAULT_429_WAIT_S
        until = min(max(until, now), now + MAX_WAIT_S)
        with self._lock:
            self._not_before[endpoint] = until
        return until


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class XUser:
    id: str
    username: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of posts, newest first, with the users they name (``includes.users``)."""

    posts: tuple[Mapping[str, Any], ...]
    users: Mapping[str, XUser]
    next_token: str | None
    newest_id: str | None
    oldest_id: str | None


def _reveal(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


class XReader:
    """What listening reads from X: who we are, our mentions, conversation searches.

    Holds one tweepy client (one connection pool) and the :class:`RateGate`, so it lives as
    long as the poller; it is not shared between threads."""

    def __init__(self, *, bearer_token: SecretStr | None = None,
                 consumer_key: SecretStr | None = None, consumer_secret: SecretStr | None = None,
                 access_token: SecretStr | None = None,
                 access_token_secret: SecretStr | None = None,
                 base_url: str = X_API_HOST, timeout_s: float = 10.0,
                 gate: RateGate | None = None) -> None:
        oauth1 = [consumer_key, consumer_secret, access_token, access_token_secret]
        self._user_auth = all(v is not None and (_reveal(v) or "").strip() for v in oauth1)
        if not self._user_auth and not (_reveal(bearer_token) or "").strip():
            raise ValueError("X needs a bearer token or the four OAuth 1.0a values")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        install_x_redaction()
        self.base_url = base_url.rstrip("/")
        self.gate = gate or RateGate()
        self._client = tweepy.Client(
            bearer_token=_reveal(bearer_token), consumer_key=_reveal(consumer_key),
            consumer_secret=_reveal(consumer_secret), access_token=_reveal(access_token),
            access_token_secret=_reveal(access_token_secret),
            return_type=requests.Response, wait_on_rate_limit=False)
        self._client.session = RebasedSession(self.base_url, timeout_s)
        self._me: XUser | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, gate: RateGate | None = None) -> Self | None:
        """None when X is not configured (no bearer token, no OAuth 1.0a consumer key)."""
        if settings.x_bearer_token is None and settings.x_consumer_key is None:
            return None
        return cls(bearer_token=settings.x_bearer_token, consumer_key=settings.x_consumer_key,
                   consumer_secret=settings.x_consumer_secret,
                   access_token=settings.x_access_token,
                   access_token_secret=settings.x_access_token_secret,
                   base_url=settings.x_base_url, timeout_s=settings.http_timeout_s, gate=gate)

    def __repr__(self) -> str:
        auth = "oauth1" if self._user_auth else "bearer"
        return f"XReader(base_url={self.base_url!r}, auth={auth!r})"

    def close(self) -> None:
        self._client.session.close()

    def me(self) -> XUser:
        """Our account (asked once per reader)."""
        if self._me is None:
            body, _ = self._call(ME, self._client.get_me)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, dict) or not data.get("id"):
                raise XReadError("X users/me: no user in the answer")
            self._me = XUser(str(data["id"]), str(data.get("username") or ""),
                             _opt(data.get("name")))
        return self._me

    def mentions(self, user_id: str, *, since_id: str | None, until_id: str | None,
                 token: str | None, max_results: int = 100) -> Page:
        """One page of posts mentioning ``user_id``, newest first."""
        body, _ = self._call(MENTIONS, self._client.get_users_mentions, user_id,
                             **_params(since_id, until_id, max_results),
                             pagination_token=token)
        return _page(body)

    def search(self, query: str, *, since_id: str | None, until_id: str | None,
               token: str | None, max_results: int = 100) -> Page:
        """One page of the recent search ``query`` (``conversation_id:<id>``), newest first."""
        body, _ = self._call(SEARCH, self._client.search_recent_tweets, query,
                             **_params(since_id, until_id, max_results), next_token=token)
        return _page(body)

    def _call(self, endpoint: str, method: Callable[..., Any], *args: Any,
              **params: Any) -> tuple[Any, Mapping[str, str]]:
        until = self.gate.blocked_until(endpoint)
        if until is not None:
            raise RateLimited(endpoint, until)
        params = {k: v for k, v in params.items() if v is not None}
        try:
            response = method(*args, user_auth=self._user_auth, **params)
        except tweepy.errors.TooManyRequests as exc:
            headers = getattr(exc.response, "headers", None) or {}
            until = self.gate.observe(endpoint, headers, limited=True)
            assert until is not None
            raise RateLimited(endpoint, until) from None
        except tweepy.errors.HTTPException as exc:
            status = getattr(exc.response, "status_code", "?")
            detail = "; ".join(str(m) for m in exc.api_messages if m)[:200]
            raise XReadError(f"X {endpoint}: answered {status}"
                             + (f": {detail}" if detail else "")) from None
        except (tweepy.errors.TweepyException, requests.RequestException) as exc:
            raise XReadError(f"X {endpoint}: {type(exc).__name__}") from None
        assert isinstance(response, requests.Response)
        self.gate.observe(endpoint, response.headers, limited=False)
        try:
            return response.json(), response.headers
        except ValueError:
            raise XReadError(f"X {endpoint}: the answer is not JSON") from None


def _params(since_id: str | None, until_id: str | None, max_results: int) -> dict[str, Any]:
    return {"since_id": since_id, "until_id": until_id, "max_results": max_results,
            "tweet_fields": list(TWEET_FIELDS), "expansions": ["author_id"],
            "user_fields": ["username", "name"]}


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _page(body: Any) -> Page:
    if not isinstance(body, dict):
        raise XReadError("X: the answer is not an object")
    data = body.get("data") or []
    if not isinstance(data, list) or not all(isinstance(t, dict) and t.get("id") for t in data):
        raise XReadError("X: data is not a list of posts")
    includes = body.get("includes") or {}
    users: dict[str, XUser] = {}
    for user in (includes.get("users") or []) if isinstance(includes, dict) else []:
        if isinstance(user, dict) and user.get("id"):
            users[str(user["id"])] = XUser(str(user["id"]), str(user.get("username") or ""),
                                           _opt(user.get("name")))
    meta = body.get("meta") or {}
    meta = meta if isinstance(meta, dict) else {}
    return Page(tuple(data), users, _opt(meta.get("next_token")), _opt(meta.get("newest_id")),
                _opt(meta.get("oldest_id")))
