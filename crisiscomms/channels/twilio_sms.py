"""SMS through Twilio's Programmable Messaging (the ``twilio`` SDK, ``messages.create``).

Decisions:

- **One recipient per request, one per ledger row.** Twilio's Messages API takes one ``To``
  per request, so the ledger's row (its idempotency key, exactly once) is one recipient
  (``limits.batch_size = 1``; the planner sizes SMS rows by it).
- **Not personal.** The text is the same for everyone of a language (rendered once per
  stage and locale, approved as is), so its GSM-7/UCS-2 segment count is exact at render and
  in lint; the playbook's ``limits: {sms: {max_segments: N}}`` caps what it may cost.
- **Base URL.** The SDK is pointed at ``base_url`` (an emulator, a proxy) by a
  ``TwilioHttpClient`` that rewrites ``https://api.twilio.com``; one SDK client per thread
  (the client keeps its last response, which carries the ``Retry-After`` we honour).
- **Errors.** 429 (Twilio code 20429) and 5xx are retried after ``Retry-After``; a bad
  number (21211, 21614...) or an opted-out one (21610) fails that row permanently, naming the
  code; a timeout after the request left is ambiguous: before a resend :meth:`reconcile` asks
  Twilio (``GET Messages.json?To=…``) whether a message with our exact text to that number
  exists. Twilio does not rewrite an SMS body (link shortening is off unless asked), so the
  text identifies it, unlike an X post.
- **Status callbacks.** With ``status_url`` each message asks Twilio to post its status to
  ``<status_url>/v1/sms/status?key=<ledger key>&r=<recipient id>``; the SMS app verifies
  ``X-Twilio-Signature`` over that exact URL and records the status in the ledger.
- **Quiet hours.** ``quiet_hours`` (each recipient's local night) is read by the sender: a
  stage that is not ``urgent`` is deferred until the window ends (the row ``deferred``).
- **Secrets.** The auth token is a ``SecretStr``, never in a reason, a repr or a log line;
  the SDK's request log (which would show the Basic credentials' user, the SID) stays at INFO.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Self
from urllib.parse import quote

import requests
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from crisiscomms.audience.quiet_hours import QuietHours
from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.http_answers import retry_after_s
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    CUSTOMER_LIST,
    ChannelLimits,
    DeliveryResult,
    Lane,
    OutboundBatch,
)
from crisiscomms.delivery.ledger import PHONE

TWILIO_API = "https://api.twilio.com"
RETRYABLE_CODES = frozenset({20429, 20500, 20503, 30001})
"""Twilio error codes worth another try (too many requests, internal error, unavailable,
queue overflow)."""
MAX_SEGMENTS = 10
"""Twilio refuses a body over 1,600 characters (error 21617); ten segments is our ceiling."""


class _BaseUrlClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client sending to ``base_url`` instead of ``https://api.twilio.com``."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API) and self.base_url != TWILIO_API:
            url = self.base_url + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


class TwilioSMSChannel(BaseChannel):
    """SMS to each customer's mobile number, one Twilio request per recipient."""

    name: ClassVar[str] = "sms"
    order: ClassVar[int] = 60
    lane: ClassVar[Lane] = Lane.fan_out
    recipients: ClassVar[str | None] = CUSTOMER_LIST
    address: ClassVar[str] = PHONE
    default_enabled: ClassVar[bool] = False
    rate_setting: ClassVar[str | None] = "sms_rate_per_s"
    parts: ClassVar[tuple[str, ...]] = ("text",)
    limits: ClassVar[ChannelLimits] = ChannelLimits(batch_size=1, max_segments=MAX_SEGMENTS)

    def __init__(
        self,
        account_sid: str,
        auth_token: SecretStr | str,
        *,
        sender: str,
        base_url: str = TWILIO_API,
        timeout_s: float = 10.0,
        status_url: str | None = None,
        quiet_hours: QuietHours | str | None = None,
    ) -> None:
        token = auth_token if isinstance(auth_token, SecretStr) else SecretStr(auth_token)
        if not account_sid.startswith("AC") or len(account_sid) != 34:
            raise ValueError("account_sid must be a Twilio account SID (AC + 32 characters)")
        if not token.get_secret_value().strip():
            raise ValueError("the Twilio auth token is empty")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not (sender.startswith("MG") or (sender.startswith("+") and sender[1:].isdigit())):
            raise ValueError("sender must be an E.164 number or a Messaging Service SID (MG…)")
        if status_url is not None and not status_url.startswith(("https://", "http://")):
            raise ValueError("status_url must be an http(s) URL")
        self.account_sid = account_sid
        self._token = token
        self.sender = sender
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.status_url = status_url.rstrip("/") if status_url else None
        self.quiet_hours = (QuietHours.parse(quiet_hours) if isinstance(quiet_hours, str)
                            else quiet_hours)
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        """None without a Twilio account SID, auth token and sender."""
        if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.sms_from):
            return None
        return cls(settings.twilio_account_sid, settings.twilio_auth_token,
                   sender=settings.sms_from, base_url=settings.twilio_base_url,
                   timeout_s=settings.http_timeout_s, status_url=settings.sms_url,
                   quiet_hours=settings.sms_quiet_hours or None)

    def __repr__(self) -> str:
        return f"TwilioSMSChannel(base_url={self.base_url!r}, sender={self.sender!r})"

    # -- checks, no I/O ------------------------------------------------------------------------


    def status_callback(self, key: str, recipient_id: int) -> str | None:
        """The URL Twilio posts this message's status to (names the ledger row)."""
        if self.status_url is None:
            return None
        return f"{self.status_url}/v1/sms/status?key={quote(key, safe='')}&r={recipient_id}"

    # -- I/O -----------------------------------------------------------------------------------

    def _client(self) -> tuple[Any, _BaseUrlClient]:
        found = getattr(self._local, "client", None)
        if found is None:
            http = _BaseUrlClient(self.base_url, self.timeout_s)
            client = Client(self.account_sid, self._token.get_secret_value(), http_client=http)
            found = self._local.client = (client, http)
        return found

    def _sender_args(self) -> dict[str, str]:
        if self.sender.startswith("MG"):
            return {"messaging_service_sid": self.sender}
        return {"from_": self.sender}

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """One Messages request; provider failures become results. No recipient (they replied
        STOP since planning): nothing to send."""
        recipients = list(batch.recipients)
        if len(recipients) > self.limits.batch_size:
            raise ValueError(f"batch {batch.key} has {len(recipients)} recipients; an SMS "
                             "request has one")
        if not recipients:
            return DeliveryResult.sent(None)
        recipient = recipients[0]
        text = batch.message.parts.get("text")
        if not text:
            raise ValueError(f"batch {batch.key}: message lacks text")
        client, http = self._client()
        options: dict[str, Any] = {"to": recipient.address, "body": text, **self._sender_args()}
        callback = self.status_callback(batch.key, recipient.id)
        if callback:
            options["status_callback"] = callback
        try:
            message = client.messages.create(**options)
        except TwilioRestException as exc:
            last = http._test_only_last_response
            return self._error_result(exc, last.headers if last is not None else None)
        except requests.exceptions.ConnectionError as exc:
            if isinstance(exc, requests.exceptions.ConnectTimeout) or _refused(exc):
                return DeliveryResult.retry(f"Twilio unreachable: {type(exc).__name__}")
            return DeliveryResult.lost(f"Twilio connection failed: {type(exc).__name__}")
        except requests.exceptions.Timeout:
            return DeliveryResult.lost(f"Twilio did not answer within {self.timeout_s} s")
        except (requests.exceptions.RequestException, ValueError) as exc:
            # an answer that is not Twilio's JSON: the message may have been accepted
            return DeliveryResult.lost(f"Twilio answered garbage: {type(exc).__name__}")
        return DeliveryResult.sent(message.sid)

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Did Twilio accept this message? The account's messages to the number (newest 50)
        are searched for our exact text; found: True (its SID is kept in ``progress``).
        Raises ``OSError`` when Twilio cannot be asked now."""
        recipients = list(batch.recipients)
        if not recipients:
            return True
        text = batch.message.parts.get("text", "")
        client, _ = self._client()
        try:
            found = client.messages.list(to=recipients[0].address, limit=50)
        except (TwilioRestException, requests.exceptions.RequestException, ValueError) as exc:
            raise OSError(f"Twilio message lookup failed: {type(exc).__name__}") from None
        for message in found:
            if message.body == text:
                if message.sid:
                    batch.progress.add(str(message.sid))
                return True
        return False

    def _error_result(self, exc: TwilioRestException, headers: Any) -> DeliveryResult:
        code = exc.code
        detail = self._scrub(str(exc.msg or "")).strip()
        reason = f"Twilio answered {exc.status}" + (f" (code {code})" if code else "") + (
            f": {detail}" if detail else "")
        if exc.status == 429 or exc.status >= 500 or code in RETRYABLE_CODES:
            return DeliveryResult.retry(reason, retry_after_s(headers))
        return DeliveryResult.permanent(reason)

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return text.replace(secret, "[redacted]") if secret else text


def _refused(exc: requests.exceptions.ConnectionError) -> bool:
    """The connection was never made (refused, no route): nothing reached Twilio."""
    text = str(exc)
    return "Connection refused" in text or "NewConnectionError" in text


