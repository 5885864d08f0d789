"""Public posts on Bluesky through the ``atproto`` SDK (XRPC ``com.atproto.repo.createRecord``
of ``app.bsky.feed.post`` records).

Decisions:

- **Limits as the app view counts them**: ``text`` at most 300 grapheme clusters and 3,000
  UTF-8 bytes, links counted as written (``render/text_length.py``). We never shorten a link's
  text (the official app does, for display): approved text goes as approved.
- **Links are facets.** Bluesky does not find links in the text itself: every http(s) link of a
  post gets a ``app.bsky.richtext.facet#link`` facet over its UTF-8 byte range, so it is
  clickable everywhere. ``langs`` carries the locale's language; threads (``text``,
  ``text_2``...) reply with ``reply: {root, parent}`` strong refs (uri + cid), the root being
  the incident's first post in that language (``threaded``). A post's provider id is
  ``<at-uri>#<cid>`` (both are needed to answer it).
- **Exactly once by record key.** Bluesky has no idempotency header, but a client may choose
  the record key: each part is created under a key derived from the ledger key and the part
  number (a valid TID, :func:`record_key`), so the same part can only ever be one record, and
  reconciliation asks ``com.atproto.repo.getRecord`` for exactly that key. A create refused
  because the key exists answers the record that is there.
- **Sessions**: ``com.atproto.server.createSession`` with the handle and an app password, kept
  (the exported session string, under a lock) for the next sends; a session the PDS refuses is
  created again once. ``createSession`` has a tight rate limit of its own, so logging in per
  post would be the first thing to break in a crisis.
- **Images with alt text**: the optional parts ``image`` (a URL) and ``alt`` attach the
  image to the thread's first post: fetched (``channels/media.py``, at most 1,000,000 bytes as
  the PDS takes a blob), uploaded with ``uploadBlob`` and embedded as
  ``app.bsky.embed.images`` with its ``alt``. An image that cannot be had fails the send.
- **Back-off**: 429 answers ``RateLimitExceededError`` with the PDS's ``ratelimit-reset``; the
  wait is that. 5xx and 502/409/413 (the SDK's "network" statuses) retry; 400 is permanent.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from typing import Any, ClassVar, Self

import httpx
from atproto_client import Client, models
from atproto_client import exceptions as at_errors
from atproto_client.request import Request, RequestBase
from pydantic import SecretStr

from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.http_answers import retry_after_s
from crisiscomms.channels.http_pool import pooled_client
from crisiscomms.channels.mastodon_social import language_of, thread_texts
from crisiscomms.channels.media import Image, MediaError, fetch_image
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    Outcome,
)
from crisiscomms.render.text_length import url_spans

POST_COLLECTION = "app.bsky.feed.post"
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_BASE_US = 1_672_531_200_000_000
"""2023-01-01T00:00:00Z in microseconds: derived record keys fall in the year after it."""
_YEAR_US = 365 * 24 * 3600 * 1_000_000


def record_key(key: str, part: int) -> str:
    """A deterministic record key for part ``part`` of ledger row ``key``: a valid TID (13
    base32-sortable characters; 53 bits of microseconds and 10 of clock id), both taken from a
    hash of the two, so every attempt at the same part names the same record. The app view
    orders posts by ``createdAt``, not by this key."""
    digest = int.from_bytes(hashlib.sha256(f"{key}/{part}".encode()).digest()[:8], "big")
    micros = _TID_BASE_US + digest % _YEAR_US
    value = (micros << 10) | (digest >> 54)
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def link_facets(text: str) -> list[models.AppBskyRichtextFacet.Main]:
    """A link facet for every http(s) link of ``text`` (UTF-8 byte offsets)."""
    facets = []
    for start, end in url_spans(text):
        byte_start = len(text[:start].encode())
        byte_end = byte_start + len(text[start:end].encode())
        facets.append(models.AppBskyRichtextFacet.Main(
            features=[models.AppBskyRichtextFacet.Link(uri=text[start:end])],
            index=models.AppBskyRichtextFacet.ByteSlice(byte_start=byte_start,
                                                        byte_end=byte_end)))
    return facets


def _ref(provider_id: str) -> models.ComAtprotoRepoStrongRef.Main:
    uri, _, cid = provider_id.partition("#")
    if not uri.startswith("at://") or not cid:
        raise ValueError(f"not a Bluesky post id (at-uri#cid): {provider_id!r}")
    return models.ComAtprotoRepoStrongRef.Main(uri=uri, cid=cid)


class _PooledRequest(Request):  # type: ignore[misc]
    """The SDK's request object on the process's keep-alive client (``http_pool``): its own
    headers (the session's token), no SSL context and connection of its own per send."""

    def __init__(self, timeout: float) -> None:
        RequestBase.__init__(self)
        self._client_kwargs = {"timeout": timeout}
        self._client = pooled_client(timeout, follow_redirects=True)

    def close(self) -> None:
        """The shared client outlives every request object: nothing to close."""


class BlueskyChannel(BaseChannel):
    """One public post per part of the message, as a thread per language."""

    name: ClassVar[str] = "bluesky"
    order: ClassVar[int] = 23
    default_enabled: ClassVar[bool] = False
    threaded: ClassVar[bool] = True
    rate_setting: ClassVar[str | None] = "bluesky_rate_per_s"
    max_thread_parts: ClassVar[int] = 9
    optional_parts: ClassVar[tuple[str, ...]] = ("image", "alt")
    """An image for the first post (its URL) and its description."""
    max_image_bytes: ClassVar[int] = 1_000_000
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_graphemes=300, max_body_bytes=3000,
                                                    max_alt_chars=2000, rate_per_s=1.0)

    def __init__(self, *, handle: str, app_password: SecretStr | str, base_url: str,
                 timeout_s: float = 10.0, media_proxy_url: str | None = None) -> None:
        password = (app_password if isinstance(app_password, SecretStr)
                    else SecretStr(app_password))
        if not handle.strip() or not password.get_secret_value().strip():
            raise ValueError("Bluesky needs a handle and an app password")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.handle = handle.strip().lstrip("@")
        self._password = password
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._session: str | None = None
        self.media_proxy_url = media_proxy_url

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if settings.bluesky_handle is None or settings.bluesky_app_password is None:
            return None
        return cls(handle=settings.bluesky_handle, app_password=settings.bluesky_app_password,
                   base_url=settings.bluesky_base_url, timeout_s=settings.http_timeout_s,
                   media_proxy_url=settings.media_proxy_url)

    def __repr__(self) -> str:
        return f"BlueskyChannel(handle={self.handle!r}, base_url={self.base_url!r})"


    # -- sessions ------------------------------------------------------------------------------

    def _client(self, *, fresh: bool = False) -> tuple[Client, str]:
        """A logged-in client and the account's DID (a kept session unless ``fresh``)."""
        client = Client(base_url=self.base_url, request=_PooledRequest(self.timeout_s))
        with self._lock:
            saved = None if fresh else self._session
        if saved is not None:
            client.login(session_string=saved, fetch_bsky_profile=False)
        else:
            client.login(self.handle, self._password.get_secret_value(),
                         fetch_bsky_profile=False)
            with self._lock:
                self._session = client.export_session_string()
        session = client._session  # the SDK keeps the DID only there
        assert session is not None
        return client, str(session.did)

    # -- sending -------------------------------------------------------------------------------

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        posts = thread_texts(batch.message, self.max_thread_parts)
        progress = batch.progress
        done = len(progress.ids)
        image: Image | None = None
        if done == 0 and batch.message.parts.get("image"):
            try:
                image = fetch_image(batch.message.parts["image"].strip(),
                                    batch.message.parts.get("alt", "").strip(),
                                    timeout_s=self.timeout_s, max_bytes=self.max_image_bytes,
                                    proxy_url=self.media_proxy_url)
            except MediaError as exc:
                return (DeliveryResult.retry(f"Bluesky post not sent: {exc}") if exc.retryable
                        else DeliveryResult.permanent(f"Bluesky post not sent: {exc}"))
        try:
            client, did = self._client()
        except at_errors.UnauthorizedError:
            return DeliveryResult.permanent("Bluesky refused the handle or app password")
        except at_errors.AtProtocolError as exc:
            return _error_result(exc, session=True)
        except httpx.HTTPError as exc:  # no session, so nothing was posted
            return DeliveryResult.retry(f"Bluesky createSession failed: {type(exc).__name__}")
        root = _ref(batch.reply_to) if batch.reply_to else None
        parent = _ref(progress.ids[-1]) if progress.ids else root
        if root is None and progress.ids:
            root = _ref(progress.ids[0])
        for n, text in enumerate(posts[done:], start=done + 1):
            result = self._post(client, did, text, batch, n, root, parent,
                                image if n == 1 else None)
            if result.outcome is not Outcome.sent:
                if not progress.ids:
                    return result
                return replace(result, provider_id=progress.joined,
                               reason=f"thread stopped before post {n} of {len(posts)}: "
                                      f"{result.reason}")
            assert result.provider_id is not None
            progress.add(result.provider_id)
            parent = _ref(result.provider_id)
            root = root or parent
        return DeliveryResult.sent(progress.joined)

    def _post(self, client: Client, did: str, text: str, batch: OutboundBatch, n: int,
              root: models.ComAtprotoRepoStrongRef.Main | None,
              parent: models.ComAtprotoRepoStrongRef.Main | None,
              image: Image | None = None) -> DeliveryResult:
        reply = (models.AppBskyFeedPost.ReplyRef(root=root, parent=parent)
                 if root is not None and parent is not None else None)
        rkey = record_key(batch.key, n)
        try:
            embed = None
            if image is not None:
                blob = client.upload_blob(image.data)
                embed = models.AppBskyEmbedImages.Main(images=[
                    models.AppBskyEmbedImages.Image(alt=image.alt, image=blob.blob)])
            record = models.AppBskyFeedPost.Record(
                created_at=client.get_current_time_iso(), text=text, reply=reply, embed=embed,
                langs=[language_of(batch.message.locale)], facets=link_facets(text) or None)
            created = client.app.bsky.feed.post.create(did, record, rkey=rkey)
        except at_errors.BadRequestError as exc:
            existing = self._existing(client, did, rkey)
            if existing is not None:  # the key is taken: by this very part, sent before
                return DeliveryResult.sent(existing)
            return _error_result(exc)
        except at_errors.UnauthorizedError:
            with self._lock:  # the kept session expired or was revoked: log in again next time
                self._session = None
            return DeliveryResult.retry("Bluesky refused the session; logging in again")
        except at_errors.AtProtocolError as exc:
            return _error_result(exc)
        except httpx.HTTPError as exc:  # a broken answer the SDK passes on: it may have it
            return DeliveryResult.lost(f"Bluesky connection lost: {type(exc).__name__}")
        return DeliveryResult.sent(f"{created.uri}#{created.cid}")

    def _existing(self, client: Client, did: str, rkey: str) -> str | None:
        """``at-uri#cid`` of our post under ``rkey``, or None when there is none. Raises
        ``AtProtocolError`` when the PDS cannot be asked."""
        try:
            found = client.app.bsky.feed.post.get(did, rkey)
        except at_errors.BadRequestError:  # RecordNotFound
            return None
        return f"{found.uri}#{found.cid}" if found.cid else None

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Are all the parts posted? Each part without an id is asked for by its record key
        (``getRecord``); found ids are added to ``batch.progress``. Raises ``AtProtocolError``
        when the PDS cannot be asked."""
        try:
            posts = thread_texts(batch.message, self.max_thread_parts)
        except ValueError:
            return False
        progress = batch.progress
        if len(progress.ids) >= len(posts):
            return True
        client, did = self._client()
        for n in range(len(progress.ids) + 1, len(posts) + 1):
            found = self._existing(client, did, record_key(batch.key, n))
            if found is None:
                return False
            progress.add(found)
        return True


def _error_result(exc: Any, *, session: bool = False) -> DeliveryResult:
    response = getattr(exc, "response", None)
    status = int(getattr(response, "status_code", 0) or 0)
    where = "Bluesky createSession" if session else "Bluesky"
    content = getattr(response, "content", None)
    detail = ""
    if content is not None:
        error, message = getattr(content, "error", None), getattr(content, "message", None)
        detail = ": ".join(str(p) for p in (error, message) if p)[:200]
    reason = f"{where} answered {status}" + (f": {detail}" if detail else "")
    if isinstance(exc, at_errors.RateLimitExceededError):
        headers = getattr(response, "headers", None) or {}
        return DeliveryResult.retry(reason, retry_after_s(headers))
    if isinstance(exc, at_errors.InvokeTimeoutError):
        return DeliveryResult.lost(f"{where} did not answer in time")
    if isinstance(exc, at_errors.NetworkError) and isinstance(
            exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout):
        return DeliveryResult.retry(f"{where} unreachable: {type(exc.__cause__).__name__}")
    if isinstance(exc, at_errors.NetworkError) and response is None:
        return DeliveryResult.lost(f"{where} connection failed: {type(exc).__name__}")
    if status >= 500 or isinstance(exc, at_errors.NetworkError):
        return DeliveryResult.retry(reason)
    return DeliveryResult.permanent(reason)
