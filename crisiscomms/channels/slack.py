"""Our own people on Slack: each stage's holding statement posted to an incoming webhook as
Block Kit (the support floor, executives, the PR lead's escalations).

Decisions:

- **One post per stage and language.** The message has two parts: ``subject`` (the header
  block, at most 150 characters, as Slack allows) and ``text`` (the holding statement with the
  status page link). Each paragraph of the text is one ``section`` block (Slack allows 3,000
  characters per section and 50 blocks); the limits are declared so render and lint refuse a
  message over them, naming the paragraph and its length.
- **The holding statement's light markdown becomes mrkdwn.** ``# heading`` lines and
  ``**bold**`` become ``*bold*``, ``- item`` becomes ``• item``; ``&``, ``<`` and ``>`` are
  escaped first (``alerts.slack_escape``), so a fact holding ``<!channel>`` stays text and
  pings nobody. Bare links are linked by Slack itself.
- **Updated in place: not through an incoming webhook.** Slack's incoming webhooks can only
  post (no message id comes back, no ``chat.update``); updating the first post in place needs a
  bot token and ``chat.update``, which this channel does not do. Each stage is its own post, in
  order, which is what a support floor scrolling a channel reads anyway.
- **Exactly once, honestly.** An incoming webhook takes no idempotency key and cannot be asked
  what it received: an answer lost on the way (timeout, reset) leaves the row ``unconfirmed``
  for a human (``crisiscomms failures``) rather than posting twice; everything else (429 with
  ``Retry-After``, 5xx) is retried with the provider's back-off.
- **The webhook URL is a secret** (``SecretStr``): never in a reason, a repr or a log.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

import httpx
import orjson
from pydantic import SecretStr

from crisiscomms.channels.alerts import slack_escape
from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.http_answers import install_webhook_redaction, post_json
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    RenderedMessage,
)
from crisiscomms.render.limits import limit_problems

MAX_BLOCKS = 50
_HEADING = re.compile(r"^#{1,6}\s+(.+)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITEM = re.compile(r"^[-*]\s+")


def mrkdwn(paragraph: str) -> str:
    """One paragraph of the holding statement as Slack mrkdwn (escaped first)."""
    lines = []
    for line in slack_escape(paragraph).splitlines():
        heading = _HEADING.match(line)
        if heading:
            line = f"*{heading.group(1).strip()}*"
        line = _ITEM.sub("• ", line)
        lines.append(_BOLD.sub(r"*\1*", line))
    return "\n".join(lines)


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs (blank-line separated), empty ones left out."""
    return [p.strip("\n") for p in text.split("\n\n") if p.strip()]


def slack_message(message: RenderedMessage) -> dict[str, Any]:
    """The Block Kit message of one rendered message (``text`` is the notification line)."""
    subject = message.parts.get("subject", "").strip()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject, "emoji": True}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(p)}}
               for p in paragraphs(message.parts.get("text", ""))]
    return {"text": slack_escape(subject), "blocks": blocks}


def _slack_error(response: httpx.Response) -> str:
    """Slack answers errors as a short word (``invalid_blocks``, ``no_service``)."""
    return response.text.strip()[:80]


class SlackChannel(BaseChannel):
    """One Block Kit post per stage and language on a Slack incoming webhook."""

    name: ClassVar[str] = "slack"
    order: ClassVar[int] = 33
    default_enabled: ClassVar[bool] = False
    """Internal: a playbook names it where our own people should see the stage."""
    rate_setting: ClassVar[str | None] = "slack_rate_per_s"
    parts: ClassVar[tuple[str, ...]] = ("subject", "text")
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_subject_chars=150,
                                                    max_paragraph_chars=3000, rate_per_s=1.0)

    def __init__(self, *, webhook_url: SecretStr | str, timeout_s: float = 10.0) -> None:
        url = webhook_url if isinstance(webhook_url, SecretStr) else SecretStr(webhook_url)
        if not url.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the Slack webhook URL must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._url = url
        self.timeout_s = timeout_s
        install_webhook_redaction()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if settings.slack_webhook_url is None:
            return None
        return cls(webhook_url=settings.slack_webhook_url, timeout_s=settings.http_timeout_s)

    def __repr__(self) -> str:
        return "SlackChannel(webhook_url=SecretStr('**********'))"

    def validate(self, message: RenderedMessage) -> list[str]:
        problems = limit_problems(self.limits, message.parts)
        if len(paragraphs(message.parts.get("text", ""))) + 1 > MAX_BLOCKS:
            problems.append(f"text has more than {MAX_BLOCKS - 1} paragraphs (Slack takes "
                            f"{MAX_BLOCKS} blocks)")
        return problems

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        body = orjson.dumps(slack_message(batch.message))
        with httpx.Client(timeout=self.timeout_s) as client:
            result, _ = post_json(client, "Slack", self._url.get_secret_value(), content=body,
                                  detail=_slack_error)
        return result

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """An incoming webhook cannot be asked what it received: None (a human checks)."""
        return None
