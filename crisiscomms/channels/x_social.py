"""Posts on X through tweepy's v2 ``Client.create_tweet``.

Decisions:

- **Pointing tweepy at ``base_url``.** tweepy 4.x hard-codes ``https://api.twitter.com`` in
  ``BaseClient.request`` and then calls ``self.session.request(method, host + route, ...)``.
  Rather than copying that method, the client's ``session`` is replaced by
  :class:`RebasedSession`, a ``requests.Session`` whose ``request`` rewrites the
  ``https://api.twitter.com`` prefix to ``base_url`` (the path and query are kept). OAuth 1.0a
  signing happens later, while the request is prepared, so the signature covers the URL that
  is really requested. Everything else (auth, error mapping, response parsing) stays tweepy's.
- **Timeout.** tweepy passes no ``timeout`` to ``session.request``; ``RebasedSession`` adds
  ``timeout=timeout_s`` (connect and each read) to every request, so a server that accepts and
  then hangs cannot hang a worker.
- **Thread safety.** ``requests.Session`` is not documented as thread-safe, so a fresh
  ``tweepy.Client`` (and session) is built for every call and closed after it; the channel
  object holds only immutable configuration. Posts are few (one per locale per stage), so the
  lost connection reuse costs nothing that matters.
- **Auth.** OAuth 1.0a user context when all four consumer/access values are given, otherwise
  the bearer token with ``user_auth=False``. Secrets are ``SecretStr``; tweepy logs request
  headers (with the bearer token) at DEBUG level, so a redacting filter is attached to the
  loggers of tweepy and of the OAuth 1.0a signer when a channel is constructed.
- ``wait_on_rate_limit=False``: a 429 is answered as a retryable result with ``retry_after_s``
  from ``x-rate-limit-reset``; the caller's retry policy decides whether to wait.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import requests
import tweepy
from pydantic import SecretStr

from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.redaction import BEARER, install_redaction
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    Outcome,
    RenderedMessage,
)
from crisiscomms.render.limits import limit_problems

X_API_HOST = "https://api.twitter.com"
"""The prefix tweepy hard-codes; :class:`RebasedSession` replaces it with ``base_url``."""

_REDACTIONS = (
    BEARER,
    (
        re.compile(
            r"(oauth_(?:consumer_key|token|signature)(?:=\"?|%3D|['\"],\s*['\"]))[^&\s'\",)]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"((?:client_key|resource_owner_key)=)[^,>\s]+"), r"\1[redacted]"),
)
_REDACTED_LOGGERS = (
    "tweepy.client",
    "requests_oauthlib.oauth1_auth",
    "oauthlib.oauth1.rfc5849",
)


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def _reveal(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


class RebasedSession(requests.Session):
    """A ``requests.Session`` that sends tweepy's ``https://api.twitter.com`` requests to
    ``base_url`` instead, and gives every request a timeout."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(method, bytes):
            method = method.decode()
        if isinstance(url, bytes):
            url = url.decode()
        if url.startswith(X_API_HOST):
            url = self.base_url + url[len(X_API_HOST):]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().request(method, url, *args, **kwargs)


def _reset_in(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds until ``x-rate-limit-reset`` (epoch seconds), or ``retry-after`` seconds."""
    if not headers:
        return None
    now = time.time() if now is None else now
    reset = headers.get("x-rate-limit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    return None


def _refused(exc: requests.ConnectionError) -> bool:
    """The connection was never made (refused, no route, name not resolved): nothing reached X."""
    text = str(exc)
    return "refused" in text.lower() or "NewConnectionError" in text or "NameResolution" in text


class XChannel(BaseChannel):
    """One public post per batch (the rendered ``text``), optionally as a reply in a thread."""

    name: ClassVar[str] = "x"
    order: ClassVar[int] = 20
    threaded: ClassVar[bool] = True
    """Each language's updates reply to that language's first post of the incident."""
    rate_setting: ClassVar[str | None] = "x_rate_per_s"
    max_thread_parts: ClassVar[int] = 9
    """A message may be a thread: parts ``text``, ``text_2`` ... ``text_9``, each one post."""
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_weighted_length=280, rate_per_s=1.0)
    """X allows about 100-200 posts per 15 minutes per user; one per second is far below the
    burst a crisis needs and leaves the rate window to the provider's 429."""

    def __init__(
        self,
        *,
        bearer_token: SecretStr | str | None = None,
        consumer_key: SecretStr | str | None = None,
        consumer_secret: SecretStr | str | None = None,
        access_token: SecretStr | str | None = None,
        access_token_secret: SecretStr | str | None = None,
        base_url: str = X_API_HOST,
        timeout_s: float = 10.0,
    ) -> None:
        oauth1 = [consumer_key, consumer_secret, access_token, access_token_secret]
        given = [v is not None and str(_reveal(_secret(v))).strip() != "" for v in oauth1]
        if any(given) and not all(given):
            raise ValueError(
                "OAuth 1.0a needs all four of consumer_key, consumer_secret, access_token "
                "and access_token_secret"
            )
        self._user_auth = all(given)
        self._bearer_token = _secret(bearer_token)
        if not self._user_auth and not (_reveal(self._bearer_token) or "").strip():
            raise ValueError("X needs a bearer token or the four OAuth 1.0a values")
        self._consumer_key = _secret(consumer_key)
        self._consumer_secret = _secret(consumer_secret)
        self._access_token = _secret(access_token)
        self._access_token_secret = _secret(access_token_secret)
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        install_redaction(_REDACTED_LOGGERS, _REDACTIONS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        """None without a bearer token or OAuth 1.0a consumer key."""
        if settings.x_bearer_token is None and settings.x_consumer_key is None:
            return None
        return cls(
            bearer_token=settings.x_bearer_token,
            consumer_key=settings.x_consumer_key,
            consumer_secret=settings.x_consumer_secret,
            access_token=settings.x_access_token,
            access_token_secret=settings.x_access_token_secret,
            base_url=settings.x_base_url,
            timeout_s=settings.http_timeout_s,
        )

    def __repr__(self) -> str:
        auth = "oauth1" if self._user_auth else "bearer"
        return f"XChannel(base_url={self.base_url!r}, auth={auth!r})"

    def validate(self, message: RenderedMessage) -> list[str]:
        """Limit problems of the post: X weighted length 280, empty text."""
        problems = limit_problems(self.limits, message.parts)
        if "text" not in message.parts:
            problems.append("text is missing")
        return problems

    def _client(self) -> tweepy.Client:
        client = tweepy.Client(
            bearer_token=_reveal(self._bearer_token),
            consumer_key=_reveal(self._consumer_key),
            consumer_secret=_reveal(self._consumer_secret),
            access_token=_reveal(self._access_token),
            access_token_secret=_reveal(self._access_token_secret),
            return_type=dict,
            wait_on_rate_limit=False,
        )
        client.session = RebasedSession(self.base_url, self.timeout_s)
        return client

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Post ``batch.message.parts["text"]`` (as a reply to ``batch.reply_to`` if set), then
        any thread parts ``text_2``, ``text_3``... each as a reply to the one before. The
        result's id is the first post's (later stages reply to the thread's root).

        A thread is one ledger row: if a later part fails after the first went out, the
        result is ``lost`` (reconciliation finds the first post by its text and the row is
        settled as sent); the missing parts are then posted by hand. Threads are short (2-3
        posts) and X answers each in well under a second, so this is rare."""
        text = batch.message.parts.get("text")
        if not text:
            raise ValueError(f"batch {batch.key}: the message has no text")
        thread = [text] + [batch.message.parts[f"text_{n}"]
                           for n in range(2, self.max_thread_parts + 1)
                           if batch.message.parts.get(f"text_{n}")]
        first: str | None = None
        reply_to = batch.reply_to
        for post in thread:
            result = self._post(post, reply_to)
            if result.outcome is not Outcome.sent:
                if first is None:
                    return result
                return DeliveryResult.lost(f"thread broken after post {first}: {result.reason}")
            first = first or result.provider_id
            reply_to = result.provider_id
        return DeliveryResult.sent(first)

    def _post(self, text: str, reply_to: str | None) -> DeliveryResult:
        client = self._client()
        try:
            payload = client.create_tweet(
                text=text,
                in_reply_to_tweet_id=reply_to,
                user_auth=self._user_auth,
            )
        except tweepy.errors.TweepyException as exc:
            return self._error_result(exc)
        except requests.ConnectionError as exc:
            if isinstance(exc, requests.ConnectTimeout) or _refused(exc):
                return DeliveryResult.retry(f"X unreachable: {type(exc).__name__}")
            # sent, then the connection broke: X may have the post (reconcile before resending)
            return DeliveryResult.lost(f"X connection lost: {type(exc).__name__}")
        except requests.Timeout:
            return DeliveryResult.lost(f"X did not answer within {self.timeout_s} s")
        except requests.RequestException as exc:
            return DeliveryResult.lost(f"X request failed: {type(exc).__name__}")
        except ValueError:  # a 2xx whose body is not JSON
            return DeliveryResult.lost("X answered with a body that is not JSON")
        finally:
            client.session.close()
        data = payload.get("data") if isinstance(payload, dict) else None
        post_id = data.get("id") if isinstance(data, dict) else None
        if not post_id:
            return DeliveryResult.lost("X answered without a post id")
        return DeliveryResult.sent(str(post_id))

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Crash reconciliation: is the batch's text among our recent posts?

        X has no idempotency key, but it refuses identical text from one account, and every
        update's text differs (next update time, status): a recent post with exactly this
        text is this batch. Raises ``requests.RequestException``/``TweepyException`` when X
        cannot be asked (the caller keeps the row and tries later).
        """
        text = batch.message.parts.get("text")
        if not text:
            return False
        return any(posted == text for _, posted in self.recent_posts(limit=100))

    def recent_posts(self, limit: int = 20) -> list[tuple[str, str]]:
        """The authenticated account's most recent posts, newest first, as (id, text).

        For crash reconciliation: a post whose response was lost shows up here. Raises
        ``tweepy.errors.TweepyException`` or ``requests.RequestException`` on failure.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        client = self._client()
        try:
            me = client.get_me(user_auth=self._user_auth)
            user_id = me["data"]["id"]
            posts: list[tuple[str, str]] = []
            token: str | None = None
            while len(posts) < limit:
                params: dict[str, Any] = {"max_results": min(100, max(5, limit - len(posts)))}
                if token:
                    params["pagination_token"] = token
                page = client.get_users_tweets(user_id, user_auth=self._user_auth, **params)
                posts.extend((str(t["id"]), str(t.get("text", ""))) for t in page.get("data") or [])
                token = (page.get("meta") or {}).get("next_token")
                if not token:
                    break
            return posts[:limit]
        finally:
            client.session.close()

    def _error_result(self, exc: tweepy.errors.TweepyException) -> DeliveryResult:
        if not isinstance(exc, tweepy.errors.HTTPException):
            return DeliveryResult.retry(f"X client error: {type(exc).__name__}")
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        messages = [str(m) for m in exc.api_messages if m]
        detail = "; ".join(messages)[:300]
        reason = f"X answered {status}" + (f": {detail}" if detail else "")
        headers = getattr(response, "headers", None)
        if isinstance(exc, tweepy.errors.TooManyRequests):
            retry_after = (
                max(0.0, exc.reset_time - time.time())
                if exc.reset_time is not None
                else _reset_in(headers)
            )
            return DeliveryResult.retry(reason, retry_after)
        if isinstance(exc, tweepy.errors.TwitterServerError) or status == 408:
            return DeliveryResult.retry(reason, _reset_in(headers))
        if isinstance(exc, tweepy.errors.Forbidden) and "duplicate" in detail.lower():
            return DeliveryResult.permanent(f"duplicate content ({reason})")
        return DeliveryResult.permanent(reason)
