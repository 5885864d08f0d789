"""Our own people on Microsoft Teams: each stage's holding statement as an Adaptive Card on an
incoming webhook (or a Workflows "post to a channel when a webhook request is received" URL).

Decisions:

- **The card**: the ``subject`` part as a bold heading, then one ``TextBlock`` per paragraph of
  the ``text`` part (``wrap``: nothing cut). Adaptive Card markdown understands ``**bold**``
  and ``- `` lists, which the holding statements use; ``# heading`` lines (which it does not
  render) become bold lines. Envelope: ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": card}]}``, the one both incoming
  webhooks and Workflows take (version 1.4, as ``channels/alerts.py`` sends).
- **Size**: Teams refuses a webhook message over about 28 KB; ``max_body_bytes`` keeps each
  part well below it, so render and lint refuse a statement that would not go.
- **Updated in place: no.** Neither incoming webhooks nor Workflows return a message id to
  update; each stage is its own card (a bot with the Bot Framework could update; not here).
- **Exactly once, honestly**: no idempotency key and nothing to ask; a lost answer leaves the
  row ``unconfirmed`` for a human. 429 (with ``Retry-After``) and 5xx are retried.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

import httpx
import orjson
from pydantic import SecretStr

from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.http_answers import install_webhook_redaction, post_json
from crisiscomms.channels.http_pool import pooled_client
from crisiscomms.channels.slack import paragraphs
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    RenderedMessage,
)

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.MULTILINE)


def teams_markdown(paragraph: str) -> str:
    """A paragraph as Adaptive Card markdown (headings as bold lines)."""
    return _HEADING.sub(lambda m: f"**{m.group(1).strip()}**", paragraph)


def teams_message(message: RenderedMessage) -> dict[str, Any]:
    """The webhook message of one rendered message."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
         "text": message.parts.get("subject", "").strip()}]
    body += [{"type": "TextBlock", "wrap": True, "text": teams_markdown(p)}
             for p in paragraphs(message.parts.get("text", ""))]
    card = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4",
            "lang": message.locale, "body": body}
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}]}


def _teams_error(response: httpx.Response) -> str:
    return response.text.strip().splitlines()[0][:120] if response.text.strip() else ""


class TeamsChannel(BaseChannel):
    """One Adaptive Card per stage and language on a Teams webhook."""

    name: ClassVar[str] = "teams"
    order: ClassVar[int] = 35
    default_enabled: ClassVar[bool] = False
    rate_setting: ClassVar[str | None] = "teams_rate_per_s"
    parts: ClassVar[tuple[str, ...]] = ("subject", "text")
    required_parts: ClassVar[tuple[str, ...]] = ()
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_subject_chars=200,
                                                    max_body_bytes=20_000, rate_per_s=2.0)

    def __init__(self, *, webhook_url: SecretStr | str, timeout_s: float = 10.0) -> None:
        url = webhook_url if isinstance(webhook_url, SecretStr) else SecretStr(webhook_url)
        if not url.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the Teams webhook URL must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._url = url
        self.timeout_s = timeout_s
        install_webhook_redaction()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if settings.teams_webhook_url is None:
            return None
        return cls(webhook_url=settings.teams_webhook_url, timeout_s=settings.http_timeout_s)

    def __repr__(self) -> str:
        return "TeamsChannel(webhook_url=SecretStr('**********'))"

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        body = orjson.dumps(teams_message(batch.message))
        result, _ = post_json(pooled_client(self.timeout_s), "Teams",
                              self._url.get_secret_value(), content=body, detail=_teams_error)
        return result

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """A Teams webhook cannot be asked what it received: None (a human checks)."""
        return None
