"""Public posts on Mastodon through Mastodon.py (``Mastodon.status_post``).

Decisions:

- **Limits as the server counts them.** A stock server takes 500 characters, counted as
  grapheme clusters with every URL as 23 (``render/text_length.py``); render and lint refuse a
  longer post, naming channel, locale and the count. Never truncated.
- **Threads and languages.** A message may be a thread (``text``, ``text_2``...), one ledger
  row; each part replies to the one before (``in_reply_to_id``), the first to the incident's
  first post in the same language (``threaded``). Every post carries its ``language`` (the
  locale's ISO 639-1 code), so followers' language filters and translation work.
- **Exactly once.** Mastodon honours an ``Idempotency-Key`` header on ``POST
  /api/v1/statuses`` (the same key within an hour answers the same status): each part is sent
  under ``<ledger key>-<part number>``, so a resend after a lost answer cannot post twice. Each
  part's id reaches the ledger as Mastodon answers (``OutboundBatch.progress``). A part cut off
  mid-flight is looked for among the account's statuses newer than the post it answers
  (``account_statuses`` with ``since_id``): same ``in_reply_to_id`` and the same text once
  Mastodon's HTML is turned back into text (:func:`status_text`).
- **Rate limits and back-off.** ``ratelimit_method="throw"``: a 429 becomes a retryable result
  whose wait is Mastodon's own ``X-RateLimit-Reset`` (parsed by Mastodon.py), never a sleep
  inside the SDK; 5xx retry; 422 (validation) and other 4xx are permanent.
- **Images with alt text.** A message may carry the optional parts ``image`` (a URL) and
  ``alt`` (approved like the text, at most 1,500 characters as Mastodon allows): the image is
  fetched (``channels/media.py``), uploaded with ``media_post(description=alt)`` and attached to
  the thread's first post. An image that cannot be had fails the send; it is never dropped.
- A fresh ``Mastodon`` client (and ``requests`` session) per call: the channel object holds only
  configuration, so threads never share a session. The token is a ``SecretStr``.
"""

from __future__ import annotations

import html
import io
import re
import time
from dataclasses import replace
from typing import Any, ClassVar, Self

import requests
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonRatelimitError,
)
from pydantic import SecretStr

from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.media import Image, MediaError, fetch_image
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    Outcome,
    RenderedMessage,
)
from crisiscomms.render.text_length import MASTODON_URL_LENGTH

MASTODON_API_VERSION = "4.0.0"
"""The server API we speak (``/api/v2/media``, idempotent statuses): given, so Mastodon.py
never asks the server for its version before a call."""
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PARAGRAPH = re.compile(r"</p>\s*<p[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def status_text(content: str) -> str:
    """A status's ``content`` (Mastodon's HTML: paragraphs, ``<br>``, links split into spans)
    back as plain text, white space normalised."""
    text = _PARAGRAPH.sub("\n\n", content)
    text = _TAG.sub("", _BREAK.sub("\n", text))
    return " ".join(html.unescape(text).split())


def same_status(ours: str, content: str) -> bool:
    return " ".join(ours.split()) == status_text(content)


def language_of(locale: str) -> str:
    """The ISO 639-1 code Mastodon's ``language`` takes (``pt-BR`` → ``pt``)."""
    return locale.replace("_", "-").split("-", 1)[0].lower()


def thread_texts(message: RenderedMessage, max_parts: int) -> list[str]:
    """The posts of a message: ``text``, then ``text_2``, ``text_3``..."""
    text = message.parts.get("text")
    if not text:
        raise ValueError(f"{message.channel} message {message.stage}/{message.locale} has no "
                         "text")
    return [text] + [message.parts[f"text_{n}"] for n in range(2, max_parts + 1)
                     if message.parts.get(f"text_{n}")]


class MastodonChannel(BaseChannel):
    """One public status per part of the message, as a thread per language."""

    name: ClassVar[str] = "mastodon"
    order: ClassVar[int] = 21
    default_enabled: ClassVar[bool] = False
    threaded: ClassVar[bool] = True
    rate_setting: ClassVar[str | None] = "mastodon_rate_per_s"
    max_thread_parts: ClassVar[int] = 9
    optional_parts: ClassVar[tuple[str, ...]] = ("image", "alt")
    """An image for the first post (its URL) and its description."""
    max_image_bytes: ClassVar[int] = 8 * 1024 * 1024
    reconcile_scan: ClassVar[int] = 40
    """Statuses read, at most, to find a part cut off mid-flight (one page)."""
    limits: ClassVar[ChannelLimits] = ChannelLimits(
        max_graphemes=500, url_length=MASTODON_URL_LENGTH, max_alt_chars=1500, rate_per_s=1.0)

    def __init__(self, *, access_token: SecretStr | str, base_url: str,
                 timeout_s: float = 10.0, visibility: str = "public",
                 media_proxy_url: str | None = None) -> None:
        token = access_token if isinstance(access_token, SecretStr) else SecretStr(access_token)
        if not token.get_secret_value().strip():
            raise ValueError("Mastodon needs an access token")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if visibility not in ("public", "unlisted"):
            raise ValueError("visibility must be public or unlisted")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.visibility = visibility
        self.media_proxy_url = media_proxy_url

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if settings.mastodon_access_token is None:
            return None
        return cls(access_token=settings.mastodon_access_token,
                   base_url=settings.mastodon_base_url, timeout_s=settings.http_timeout_s,
                   media_proxy_url=settings.media_proxy_url)

    def __repr__(self) -> str:
        return f"MastodonChannel(base_url={self.base_url!r})"


    def _client(self) -> Mastodon:
        return Mastodon(access_token=self._token.get_secret_value(), api_base_url=self.base_url,
                        ratelimit_method="throw", request_timeout=self.timeout_s,
                        session=requests.Session(), version_check_mode="none",
                        mastodon_version=MASTODON_API_VERSION)

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Post the parts not yet posted, each replying to the one before; each id goes to
        ``batch.progress`` as Mastodon answers. A failure after some parts carries their ids."""
        posts = thread_texts(batch.message, self.max_thread_parts)
        progress = batch.progress
        done = len(progress.ids)
        reply_to = progress.ids[-1] if progress.ids else batch.reply_to
        image: Image | None = None
        if done == 0 and batch.message.parts.get("image"):
            try:
                image = fetch_image(batch.message.parts["image"].strip(),
                                    batch.message.parts.get("alt", "").strip(),
                                    timeout_s=self.timeout_s, max_bytes=self.max_image_bytes,
                                    proxy_url=self.media_proxy_url)
            except MediaError as exc:
                return (DeliveryResult.retry(f"Mastodon post not sent: {exc}") if exc.retryable
                        else DeliveryResult.permanent(f"Mastodon post not sent: {exc}"))
        client = self._client()
        try:
            for n, text in enumerate(posts[done:], start=done + 1):
                result = self._post(client, text, reply_to, batch, n,
                                    image if n == 1 else None)
                if result.outcome is not Outcome.sent:
                    if not progress.ids:
                        return result
                    return replace(result, provider_id=progress.joined,
                                   reason=f"thread stopped before post {n} of {len(posts)}: "
                                          f"{result.reason}")
                assert result.provider_id is not None
                progress.add(result.provider_id)
                reply_to = result.provider_id
        finally:
            client.session.close()
        return DeliveryResult.sent(progress.joined)

    def _post(self, client: Mastodon, text: str, reply_to: str | None, batch: OutboundBatch,
              n: int, image: Image | None = None) -> DeliveryResult:
        try:
            media_ids = None
            if image is not None:
                media = client.media_post(io.BytesIO(image.data), mime_type=image.mime_type,
                                          description=image.alt, file_name="image")
                media_ids = [_get(media, "id")]
            status = client.status_post(
                text, in_reply_to_id=reply_to, visibility=self.visibility,
                language=language_of(batch.message.locale), media_ids=media_ids,
                idempotency_key=f"{batch.key}-{n}")
        except MastodonRatelimitError:
            reset = client.ratelimit_reset
            wait = max(0.0, float(reset) - time.time()) if reset else None
            return DeliveryResult.retry("Mastodon answered 429 (rate limited)", wait)
        except MastodonNetworkError as exc:
            if _refused(exc):  # never reached the server
                return DeliveryResult.retry(f"Mastodon unreachable: {_network_kind(exc)}")
            # the request may have reached the server: the Idempotency-Key makes a resend safe,
            # and reconciliation looks first
            return DeliveryResult.lost(f"Mastodon connection failed: {_network_kind(exc)}")
        except MastodonAPIError as exc:
            return _api_error(exc)
        except MastodonError as exc:
            return DeliveryResult.lost(f"Mastodon answer unusable: {type(exc).__name__}")
        post_id = _get(status, "id")
        if not post_id:
            return DeliveryResult.lost("Mastodon answered without a status id")
        return DeliveryResult.sent(str(post_id))

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Are all the parts of ``batch`` posted? Parts with an id are; the first without one
        is looked for among the account's statuses newer than the post it answers (same
        ``in_reply_to_id``, same text); found ids are added to ``batch.progress``. Raises
        ``MastodonError`` when the server cannot be asked."""
        try:
            posts = thread_texts(batch.message, self.max_thread_parts)
        except ValueError:
            return False
        progress = batch.progress
        if len(progress.ids) >= len(posts):
            return True
        parent = progress.ids[-1] if progress.ids else batch.reply_to
        client = self._client()
        try:
            me = client.account_verify_credentials()
            found_statuses = client.account_statuses(_get(me, "id"), since_id=parent,
                                                     limit=self.reconcile_scan)
        finally:
            client.session.close()
        statuses = [(str(_get(s, "id")), _get(s, "in_reply_to_id"), str(_get(s, "content") or ""))
                    for s in found_statuses or []]
        for text in posts[len(progress.ids):]:
            match = next((sid for sid, replied, content in statuses
                          if (str(replied) if replied else None) == parent
                          and same_status(text, content)), None)
            if match is None:
                return False
            progress.add(match)
            parent = match
        return True


def _get(value: Any, name: str) -> Any:
    """A field of a Mastodon.py entity (an attribute dict)."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _refused(exc: MastodonNetworkError) -> bool:
    text = str(exc)
    return ("refused" in text.lower() or "NewConnectionError" in text
            or "NameResolution" in text or "ConnectTimeout" in text)


def _network_kind(exc: MastodonNetworkError) -> str:
    text = str(exc)
    for kind in ("ReadTimeout", "ConnectTimeout", "ConnectionError", "RemoteDisconnected",
                 "Connection refused", "ChunkedEncodingError"):
        if kind in text:
            return kind
    return type(exc).__name__


def _api_error(exc: MastodonAPIError) -> DeliveryResult:
    args = exc.args
    status = args[1] if len(args) > 1 and isinstance(args[1], int) else 0
    detail = str(args[3])[:200] if len(args) > 3 and args[3] else ""
    reason = f"Mastodon answered {status}" + (f": {detail}" if detail else "")
    if status >= 500 or status in (408, 429):
        return DeliveryResult.retry(reason)
    return DeliveryResult.permanent(reason)
