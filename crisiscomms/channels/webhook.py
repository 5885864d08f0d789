"""An outgoing webhook for anything else (an internal bus, a partner's system, a chat bridge):
every message POSTed as JSON, signed the Standard Webhooks way, like the events our intake
accepts (https://www.standardwebhooks.com).

Decisions:

- **Signed with the intake's own code** (``intake/signatures.py`` ``sign_standard``): headers
  ``webhook-id`` (the ledger row's idempotency key), ``webhook-timestamp`` (Unix seconds, fresh
  on every attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
  with a ``whsec_`` secret. A receiver verifies it exactly as ``crisiscomms api`` verifies
  ours.
- **The body** follows the Standard Webhooks payload shape ``{"type", "timestamp", "data"}``:
  ``type`` is ``crisiscomms.message``; ``data`` holds the incident reference, playbook, stage,
  the incident status the stage sets, severity, components, the locale, the rendered
  ``subject`` and ``text`` (the approved words, exactly), the status page link, the content
  hash the approval covers and the idempotency key.
- **Exactly once.** Standard Webhooks receivers de-duplicate on ``webhook-id``, which is our
  idempotency key and the same on every attempt: after an answer lost on the way the sender
  resends (``reconcile`` answers False: a resend is what the scheme expects, the receiver keeps
  one). 429/408/5xx retry with ``Retry-After``; 410 Gone (the scheme's "stop sending") and
  other 4xx are permanent.
- The secret never leaves in a reason, a repr or a log; the URL is not a secret (the signature
  is the credential) but reasons do not repeat it either.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Self

import orjson
from pydantic import SecretStr

from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.http_answers import post_json
from crisiscomms.channels.http_pool import pooled_client
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
)
from crisiscomms.intake.signatures import (
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    secret_key,
    sign_standard,
)

EVENT_TYPE = "crisiscomms.message"


def webhook_payload(batch: OutboundBatch, *, now: float) -> dict[str, Any]:
    """The JSON body of one message (Standard Webhooks payload shape)."""
    facts = batch.facts
    message = batch.message
    return {
        "type": EVENT_TYPE,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "data": {
            "key": batch.key,
            "incident_ref": facts.incident_ref,
            "playbook": message.playbook,
            "stage": message.stage,
            "incident_status": batch.incident_status,
            "severity": str(facts.severity),
            "components": list(facts.components),
            "locale": message.locale,
            "subject": message.parts.get("subject", ""),
            "text": message.parts.get("text", ""),
            "status_page_url": str(facts.status_page_url),
            "content_hash": message.content_hash,
        },
    }


class WebhookChannel(BaseChannel):
    """One signed POST per stage and language to the configured URL."""

    name: ClassVar[str] = "webhook"
    order: ClassVar[int] = 37
    default_enabled: ClassVar[bool] = False
    rate_setting: ClassVar[str | None] = "webhook_rate_per_s"
    parts: ClassVar[tuple[str, ...]] = ("subject", "text")
    required_parts: ClassVar[tuple[str, ...]] = ()
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_body_bytes=100_000)

    def __init__(self, *, url: str, secret: SecretStr | str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must be an http(s) URL")
        value = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        secret_key(value.get_secret_value())  # a ValueError (without the secret) if malformed
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.url = url
        self._secret = value
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if settings.webhook_url is None or settings.webhook_secret is None:
            return None
        return cls(url=settings.webhook_url, secret=settings.webhook_secret,
                   timeout_s=settings.http_timeout_s)

    def __repr__(self) -> str:
        return f"WebhookChannel(url={self.url!r}, secret=SecretStr('**********'))"

    def signed(self, batch: OutboundBatch, *, now: float | None = None
               ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of ``batch``'s request, signed at ``now``."""
        moment = time.time() if now is None else now
        body = orjson.dumps(webhook_payload(batch, now=moment))
        stamp = str(int(moment))
        headers = {WEBHOOK_ID: batch.key, WEBHOOK_TIMESTAMP: stamp,
                   WEBHOOK_SIGNATURE: sign_standard(self._secret.get_secret_value(), batch.key,
                                                    stamp, body)}
        return body, headers

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        body, headers = self.signed(batch)
        result, _ = post_json(pooled_client(self.timeout_s), "webhook", self.url, content=body,
                              headers=headers)
        return result

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """False: resend under the same ``webhook-id``, which the receiver de-duplicates."""
        return False
