"""What a provider's HTTP answer means for the ledger: shared by the channels that speak plain
HTTP (Slack, Teams, the outgoing webhook) and by the SDK-based ones for back-off headers.

- :func:`retry_after_s` reads the provider's own back-off: ``Retry-After`` (seconds or an HTTP
  date: Slack, Teams, webhook receivers), ``X-RateLimit-Reset`` (an ISO 8601 time on Mastodon,
  epoch seconds elsewhere) and ``ratelimit-reset`` (epoch seconds: Bluesky's PDS).
- :func:`post_json` sends one request with httpx and answers a ``DeliveryResult``: a refused
  connection or a connect timeout reached nobody (retry); a read timeout, a reset or a broken
  answer may hide an accepted request (``lost``: the sender reconciles before resending);
  429, 408 and 5xx retry with the provider's back-off; another 4xx is permanent.
  The URL is never part of a reason (a webhook URL is a credential).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from crisiscomms.core.redaction import BEARER, install_redaction
from crisiscomms.delivery.contract import DeliveryResult

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
WEBHOOK_REDACTIONS = (
    (re.compile(r"(/services/)[^\s\"']+"), r"\1[redacted]"),        # Slack incoming webhooks
    (re.compile(r"(/webhookb2/)[^\s\"']+"), r"\1[redacted]"),       # Teams incoming webhooks
    (re.compile(r"([?&]sig=)[^&\s\"']+"), r"\1[redacted]"),         # Teams Workflows URLs
    BEARER,
)
"""A webhook URL is a credential: httpx logs every request's URL at INFO level."""


def install_webhook_redaction() -> None:
    """Blank webhook secrets in httpx's request log lines (idempotent)."""
    install_redaction(("httpx",), WEBHOOK_REDACTIONS)


def _epoch_or_date(value: str) -> float | None:
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def retry_after_s(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds the provider asks us to wait, from its own headers (None: it does not say)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    now = time.time() if now is None else now
    after = lower.get("retry-after")
    if after:
        try:
            return max(0.0, float(after))
        except ValueError:
            moment = _epoch_or_date(after)
            if moment is not None:
                return max(0.0, moment - now)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        reset = lower.get(name)
        if reset:
            moment = _epoch_or_date(reset)
            if moment is not None:
                # a small number is "seconds from now" (some servers), a large one a moment
                return max(0.0, moment - now) if moment > 10**8 else max(0.0, moment)
    return None


def answer_result(provider: str, response: httpx.Response, *,
                  detail: Callable[[httpx.Response], str] | None = None) -> DeliveryResult:
    """The result of a provider's answer: 2xx sent, 429/408/5xx retry (with its back-off),
    any other status permanent. ``detail`` picks a short, secret-free reason from the body."""
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryResult.sent()
    text = ""
    if detail is not None:
        try:
            text = detail(response)[:200]
        except (ValueError, KeyError, TypeError):
            text = ""
    reason = f"{provider} answered {status}" + (f": {text}" if text else "")
    if status in RETRY_STATUSES:
        return DeliveryResult.retry(reason, retry_after_s(response.headers))
    return DeliveryResult.permanent(reason)


def post_json(client: httpx.Client, provider: str, url: str, *, content: bytes,
              headers: Mapping[str, str] | None = None,
              detail: Callable[[httpx.Response], str] | None = None,
              ) -> tuple[DeliveryResult, httpx.Response | None]:
    """POST ``content`` (JSON bytes) to ``url``; the result and the answer (None: none came)."""
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        response = client.post(url, content=content, headers=sent_headers)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return DeliveryResult.retry(f"{provider} unreachable: {type(exc).__name__}"), None
    except httpx.TimeoutException as exc:
        return DeliveryResult.lost(f"{provider} did not answer in time: {type(exc).__name__}"), None
    except httpx.HTTPError as exc:  # reset, broken or truncated answer: it may have it
        return DeliveryResult.lost(f"{provider} connection lost: {type(exc).__name__}"), None
    return answer_result(provider, response, detail=detail), response
