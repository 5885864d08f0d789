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
- **Threads, exactly once.** A message may be a thread (``text``, ``text_2``...), one ledger
  row. Each part's post id goes to the ledger as soon as X answers
  (``OutboundBatch.progress``), so a resend after a failure or a crash continues the thread
  after the last part it has an id for and never reposts one.
- **Reconciliation without an idempotency key.** X has none, and it returns every link as a
  t.co link, so a post is never found by the exact text we sent. A part whose id we hold is
  posted (X gave us the id). A part cut off mid-flight (the request left, the answer or the
  process was lost) is looked for among the account's recent posts (``get_users_tweets``, newer
  than the post it answers when that is known, up to ``reconcile_scan`` posts): same text once
  every link on both sides is taken as a wildcard (:func:`same_post_text`), and replying to the
  same post. X refuses an exact duplicate with 403, so a blind resend would only fail.
"""

from __future__ import annotations

import html
import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import requests
import tweepy
from pydantic import SecretStr

from crisiscomms.channels.base import BaseChannel
from crisiscomms.core.settings import Settings
from crisiscomms.core.x_http import X_API_HOST, RebasedSession, install_x_redaction
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    Outcome,
)


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def _reveal(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


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


_TCO_LINK = re.compile(r"https?://t\.co/[A-Za-z0-9]+", re.IGNORECASE)


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def same_post_text(ours: str, theirs: str) -> bool:
    """Is ``theirs`` (a post's text as X's API returns it) the post of ``ours`` (the text we
    sent)? X replaces every link it recognises (with a scheme, ``www.`` or a bare domain) by a
    23-character t.co link and escapes ``&``, ``<`` and ``>``; so each t.co link of theirs
    stands for one run of non-space characters of ours, and the rest must be equal once
    Unicode- and white-space-normalised."""
    pieces = _TCO_LINK.split(_normalised(html.unescape(theirs)))
    pattern = r"\S+".join(re.escape(piece) for piece in pieces)
    return re.fullmatch(pattern, _normalised(ours)) is not None


@dataclass(frozen=True)
class Post:
    """One of the account's posts as X's API returns it."""

    id: str
    text: str
    replied_to: str | None = None


def _replied_to(tweet: Mapping[str, Any]) -> str | None:
    for ref in tweet.get("referenced_tweets") or []:
        if isinstance(ref, Mapping) and ref.get("type") == "replied_to":
            return str(ref.get("id"))
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
    reconcile_scan: ClassVar[int] = 200
    """Recent posts read, at most, to find a part cut off mid-flight (two pages of 100)."""
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
        install_x_redaction()

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

    def thread(self, batch: OutboundBatch) -> list[str]:
        """The posts of ``batch``'s message: ``text``, then ``text_2``, ``text_3``..."""
        text = batch.message.parts.get("text")
        if not text:
            raise ValueError(f"batch {batch.key}: the message has no text")
        return [text] + [batch.message.parts[f"text_{n}"]
                         for n in range(2, self.max_thread_parts + 1)
                         if batch.message.parts.get(f"text_{n}")]

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Post the message's parts not yet posted (``batch.progress`` holds the ids of those
        that are), the first as a reply to ``batch.reply_to`` if set, each later one as a
        reply to the one before; each id is added to ``batch.progress`` (so the ledger has it)
        as X answers. The result's id is every part's id, comma-separated (later stages reply
        to the first: the thread's root).

        A failure after some parts went out carries their ids: the ledger keeps them, and a
        retry (or ``send_once``'s resend after reconciliation) continues with the next part."""
        thread = self.thread(batch)
        progress = batch.progress
        done = len(progress.ids)
        reply_to = progress.ids[-1] if progress.ids else batch.reply_to
        for n, post in enumerate(thread[done:], start=done + 1):
            result = self._post(post, reply_to)
            if result.outcome is not Outcome.sent:
                if not progress.ids:
                    return result
                return replace(result, provider_id=progress.joined,
                               reason=f"thread stopped before post {n} of {len(thread)}: "
                                      f"{result.reason}")
            assert result.provider_id is not None
            progress.add(result.provider_id)
            reply_to = result.provider_id
        return DeliveryResult.sent(progress.joined)

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
        """Crash reconciliation: are all the parts of ``batch`` posted?

        A part whose id ``batch.progress`` holds is (X gave us the id; no request). The first
        part without one may have been cut off mid-flight: it is looked for among the account's
        posts newer than the one it answers (:meth:`posts_since`), t.co-aware
        (:func:`same_post_text`) and replying to the same post; when found, its id is added to
        ``batch.progress`` and the next part is looked for the same way. True when every part
        is posted; False when some are not (the resend posts those, after the ones found).
        Raises ``requests.RequestException``/``TweepyException`` when X cannot be asked (the
        caller keeps the row and tries later).
        """
        try:
            thread = self.thread(batch)
        except ValueError:
            return False
        progress = batch.progress
        if len(progress.ids) >= len(thread):
            return True
        parent = progress.ids[-1] if progress.ids else batch.reply_to
        posts = self.posts_since(parent, limit=self.reconcile_scan)
        for text in thread[len(progress.ids):]:
            found = next((p for p in posts if p.replied_to == parent
                          and same_post_text(text, p.text)), None)
            if found is None:
                return False
            progress.add(found.id)
            parent = found.id
        return True

    def posts_since(self, since_id: str | None, *, limit: int) -> list[Post]:
        """The account's posts newer than ``since_id`` (all recent ones when None), newest
        first, at most ``limit``, each with the post it replies to. Raises
        ``tweepy.errors.TweepyException`` or ``requests.RequestException`` on failure."""
        return self._timeline(limit, since_id=since_id)

    def recent_posts(self, limit: int = 20) -> list[tuple[str, str]]:
        """The authenticated account's most recent posts, newest first, as (id, text): the
        text as X returns it (links are t.co links).

        Raises ``tweepy.errors.TweepyException`` or ``requests.RequestException`` on failure.
        """
        return [(p.id, p.text) for p in self._timeline(limit)]

    def _timeline(self, limit: int, *, since_id: str | None = None) -> list[Post]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        client = self._client()
        try:
            me = client.get_me(user_auth=self._user_auth)
            user_id = me["data"]["id"]
            posts: list[Post] = []
            token: str | None = None
            while len(posts) < limit:
                params: dict[str, Any] = {"max_results": min(100, max(5, limit - len(posts))),
                                          "tweet_fields": ["referenced_tweets"]}
                if since_id:
                    params["since_id"] = since_id
                if token:
                    params["pagination_token"] = token
                page = client.get_users_tweets(user_id, user_auth=self._user_auth, **params)
                posts.extend(Post(str(t["id"]), str(t.get("text", "")), _replied_to(t))
                             for t in page.get("data") or [])
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
