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
- **Two ways in.** An incoming webhook (``slack_webhook_url``) can only post: no message id
  comes back and nothing can be updated, so each stage is its own post, in order. With a bot
  token and a channel id (``slack_bot_token``, ``slack_channel``; scopes ``chat:write`` and
  ``channels:history``) the Web API is used (``channels/slack_api.py``): the first stage of an
  incident in a language is posted, and each later stage is posted **in its thread** and the
  first post is **updated in place** (``chat.update``) to show the latest stage, so the
  channel's top-level message is always the current holding statement (``threaded``: the
  sender gives each message the ``ts`` of its language's first post).
- **Exactly once, honestly.** An incoming webhook takes no idempotency key and cannot be asked
  what it received: an answer lost on the way (timeout, reset) leaves the row ``unconfirmed``
  for a human (``crisiscomms failures``) rather than posting twice. With the Web API every
  message carries the ledger key in its ``metadata``, so a lost answer is looked up
  (``conversations.history``/``replies``) before anything is resent; the thread reply's ``ts``
  reaches the ledger before the in-place update, so a failed update is retried alone. 429
  (``Retry-After``) and 5xx are retried with the provider's back-off.
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
from crisiscomms.channels.http_pool import pooled_client
from crisiscomms.channels.slack_api import METADATA_EVENT, SLACK_API, SlackWebAPI
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    Outcome,
    RenderedMessage,
)

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
    required_parts: ClassVar[tuple[str, ...]] = ()
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_subject_chars=150,
                                                    max_paragraph_chars=3000, rate_per_s=1.0)

    threaded: ClassVar[bool] = True
    """With the Web API, later stages answer (and update) the language's first post; an
    incoming webhook has no ids, so there it changes nothing."""

    def __init__(self, *, webhook_url: SecretStr | str | None = None,
                 bot_token: SecretStr | str | None = None, channel: str | None = None,
                 base_url: str = SLACK_API, timeout_s: float = 10.0) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._url: SecretStr | None = None
        self._api: SlackWebAPI | None = None
        if bot_token is not None:
            token = bot_token if isinstance(bot_token, SecretStr) else SecretStr(bot_token)
            if not token.get_secret_value().strip() or not (channel or "").strip():
                raise ValueError("the Slack Web API needs a bot token and a channel id")
            if not base_url.startswith(("http://", "https://")):
                raise ValueError("the Slack API base URL must be an http(s) URL")
            self._api = SlackWebAPI(token, str(channel).strip(), base_url.rstrip("/"),
                                    timeout_s)
        elif webhook_url is not None:
            url = webhook_url if isinstance(webhook_url, SecretStr) else SecretStr(webhook_url)
            if not url.get_secret_value().startswith(("http://", "https://")):
                raise ValueError("the Slack webhook URL must be an http(s) URL")
            self._url = url
        else:
            raise ValueError("Slack needs an incoming webhook URL or a bot token and channel")
        install_webhook_redaction()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        """The Web API when a bot token and channel are set, else the incoming webhook."""
        if settings.slack_bot_token is not None and settings.slack_channel:
            return cls(bot_token=settings.slack_bot_token, channel=settings.slack_channel,
                       base_url=settings.slack_base_url, timeout_s=settings.http_timeout_s)
        if settings.slack_webhook_url is None:
            return None
        return cls(webhook_url=settings.slack_webhook_url, timeout_s=settings.http_timeout_s)

    def __repr__(self) -> str:
        if self._api is not None:
            return (f"SlackChannel(channel={self._api.channel!r}, "
                    "bot_token=SecretStr('**********'))")
        return "SlackChannel(webhook_url=SecretStr('**********'))"

    def validate(self, message: RenderedMessage) -> list[str]:
        problems = super().validate(message)
        if len(paragraphs(message.parts.get("text", ""))) + 1 > MAX_BLOCKS:
            problems.append(f"text has more than {MAX_BLOCKS - 1} paragraphs (Slack takes "
                            f"{MAX_BLOCKS} blocks)")
        return problems

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        if self._api is not None:
            return self._send_api(self._api, batch)
        assert self._url is not None
        body = orjson.dumps(slack_message(batch.message))
        result, _ = post_json(pooled_client(self.timeout_s), "Slack",
                              self._url.get_secret_value(), content=body, detail=_slack_error)
        return result

    def _send_api(self, api: SlackWebAPI, batch: OutboundBatch) -> DeliveryResult:
        """Post (in the thread of ``batch.reply_to`` when there is one), then update that first
        post in place with this stage. The post's ``ts`` reaches the ledger first
        (``batch.progress``), so a resend after a failed update only updates."""
        message = slack_message(batch.message)
        progress = batch.progress
        if not progress.ids:
            body: dict[str, Any] = {"channel": api.channel, **message, "metadata": {
                "event_type": METADATA_EVENT, "event_payload": {"key": batch.key}}}
            if batch.reply_to:
                body["thread_ts"] = batch.reply_to
            result, answer = api.call("chat.postMessage", body)
            if result.outcome is not Outcome.sent:
                return result
            if not answer.get("ts"):
                return DeliveryResult.lost("Slack chat.postMessage answered without a ts")
            progress.add(str(answer["ts"]))
        if batch.reply_to:
            result, _ = api.call("chat.update", {"channel": api.channel, "ts": batch.reply_to,
                                                 **message})
            if result.outcome is not Outcome.sent:
                return DeliveryResult(result.outcome, provider_id=progress.joined,
                                      reason=f"posted in the thread, first post not updated "
                                             f"yet: {result.reason}",
                                      retry_after_s=result.retry_after_s)
        return DeliveryResult.sent(progress.joined)

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """An incoming webhook cannot be asked what it received: None (a human checks). The
        Web API is asked for the message carrying our key: found and nothing left to update
        (a first post), True; found in a thread, its ``ts`` is recorded and False (the resend
        only updates the first post, which is idempotent); not found, False."""
        if self._api is None:
            return None
        if not batch.progress.ids:
            found = self._api.find(batch.key, thread_ts=batch.reply_to)
            if found is None:
                return False
            batch.progress.add(found)
        return not batch.reply_to
