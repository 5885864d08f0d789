"""Email through SendGrid's v3 Mail Send API, up to 1,000 personalizations per request.

The approved message is rendered once with substitution tags (``%first_name%`` in text parts,
``%first_name.html%`` in HTML parts); each recipient's personalization carries the values, so
one request serves 1,000 recipients and the approved text is what everyone reads.

Decisions:

- **The SDK.** Requests go through the real ``sendgrid`` SDK (``SendGridAPIClient`` with
  ``host=base_url``, so it can point at the emulator or a proxy).
- **Thread safety.** ``python_http_client.Client`` mutates shared state on every call (the
  ``request_headers`` dict it passes to child clients, ``_version``), so a client is *not*
  shared: a fresh ``SendGridAPIClient`` is built per ``send`` (cheap: no connection is kept,
  urllib opens one per request anyway). The channel object itself is immutable after
  construction and safe to use from several threads.
- **Timeout.** ``Client.timeout`` (propagated to child clients) and the ``timeout=`` argument
  of the call are both set to ``timeout_s``; urllib applies it to the connect and to every
  socket read, so a server that accepts and then says nothing fails after ``timeout_s``.
- **Secrets.** The API key is a ``SecretStr`` held by the channel; it is never put in a reason,
  a repr or a log line. ``SendGridAPIClient`` falls back to the ``SENDGRID_API_KEY``
  environment variable when given no key, so an empty key is refused here. python_http_client
  logs request headers (with the bearer key) at DEBUG level: a redacting filter is attached to
  its logger when a channel is constructed.
- **Unsubscribe.** Every personalization carries ``List-Unsubscribe`` (and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` for a web link) with the recipient's
  own link, taken from their ``%unsubscribe_url%`` substitution (see :meth:`unsubscribe_link`).
- **Reply-To.** With a reply domain (``Settings.reply_domain``, the Inbound Parse host), each
  request carries ``reply_to: replies+<batch key>@<reply domain>``: a reply reaches the
  listening app's ``/v1/sendgrid/inbound`` and names the exact ledger batch, hence the message,
  incident and locale it answers (``reactions/sources/inbound_parse.py``).
- **Substitution sizes.** SendGrid refuses a whole request when one personalization's
  substitutions exceed 10,000 bytes. That cannot be judged by ``validate`` (it sees no
  recipients), and failing the batch would punish the 999 other recipients, so the sender asks
  :meth:`SendGridEmailChannel.recipient_problems` about each recipient of a batch it built,
  leaves the offenders out of the request and records each as a failed ledger row of its own
  with SendGrid's reason (``delivery/ledger.py`` ``split_out``). ``send`` treats an offender,
  like more than ``batch_size`` recipients or none, as a programming error and raises
  ``ValueError`` before any I/O.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any, ClassVar, Self
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

import httpx
import orjson
import python_http_client.exceptions as http_errors
from pydantic import SecretStr
from sendgrid import SendGridAPIClient

from crisiscomms.channels.base import BaseChannel
from crisiscomms.channels.http_answers import retry_after_s
from crisiscomms.channels.http_pool import pooled_client
from crisiscomms.core.redaction import BEARER, install_redaction
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    CUSTOMER_LIST,
    ChannelLimits,
    DeliveryResult,
    Lane,
    OutboundBatch,
    OutboundRecipient,
    substitution_problems,
    substitutions_size,
)
from crisiscomms.reactions.sources.csat import rating_link

_REDACTIONS = (
    BEARER,
    (re.compile(r"(['\"]?Authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}]+"), r"\1[redacted]"),
)
_REDACTED_LOGGERS = ("python_http_client.client",)
SENDGRID_HOSTS = frozenset({"api.sendgrid.com", "api.eu.sendgrid.com"})
UNSUBSCRIBE_TAG = "%unsubscribe_url%"
"""The substitution that carries each recipient's unsubscribe link (filled by the publisher
for every email recipient; ``rendering.substitution_tag("unsubscribe_url")``): also sent as the
personalization's ``List-Unsubscribe`` header."""


SUBSTITUTIONS_TOO_LARGE = (
    "The total collective size of your substitutions may not exceed 10,000 bytes per "
    "personalization object.")
"""SendGrid's 400 message (field ``personalizations.N.substitutions``) for an oversized one."""

TRANSPORTS = ("sdk", "httpx")
def _secret(value: SecretStr | str) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


def reply_address(batch_key: str, reply_domain: str) -> str:
    """The Reply-To of one batch: ``replies+<batch key>@<reply domain>`` (the listening app
    reads the key back from the Inbound Parse envelope)."""
    return f"replies+{batch_key}@{reply_domain}"


def unsubscribe_url(settings: Settings) -> str | None:
    """The prefix of every subscriber's unsubscribe link (``<subscriptions_url>/v1/
    unsubscribe/``, followed by their token); None without a subscriptions app."""
    if not settings.subscriptions_url:
        return None
    return f"{settings.subscriptions_url.rstrip('/')}/v1/unsubscribe/"


class SendGridEmailChannel(BaseChannel):
    """Personal email, one SendGrid request per batch of up to 1,000 recipients."""

    name: ClassVar[str] = "email"
    order: ClassVar[int] = 50
    lane: ClassVar[Lane] = Lane.fan_out
    recipients: ClassVar[str | None] = CUSTOMER_LIST
    personal: ClassVar[bool] = True
    rate_setting: ClassVar[str | None] = "email_rate_per_s"
    parts: ClassVar[tuple[str, ...]] = ("subject", "html", "text")
    required_parts: ClassVar[tuple[str, ...]] = parts
    limits: ClassVar[ChannelLimits] = ChannelLimits(
        batch_size=1000,
        max_subject_chars=150,
        max_body_bytes=1_000_000,
        max_substitution_bytes=10_000,
    )

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        base_url: str = "https://api.sendgrid.com",
        from_email: str,
        from_name: str,
        timeout_s: float = 10.0,
        sandbox: bool = False,
        transport: str = "sdk",
        unsubscribe_url: str | None = None,
        reply_domain: str | None = None,
        csat_secret: SecretStr | None = None,
        listen_url: str | None = None,
    ) -> None:
        key = _secret(api_key)
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.transport = transport
        if not key.get_secret_value().strip():
            raise ValueError("the SendGrid API key is empty")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if "@" not in from_email:
            raise ValueError("from_email must be an email address")
        self._api_key = key
        self.base_url = base_url.rstrip("/")
        self.from_email = from_email
        self.from_name = from_name
        self.timeout_s = timeout_s
        self.sandbox = sandbox
        if unsubscribe_url is not None and not unsubscribe_url.startswith(("https://", "http://")):
            raise ValueError("unsubscribe_url must be an http(s) URL")
        self.unsubscribe_url = unsubscribe_url
        if reply_domain is not None and (
                "@" in reply_domain or "." not in reply_domain.strip(".") or
                any(c.isspace() for c in reply_domain)):
            raise ValueError("reply_domain must be a domain name, e.g. reply.example.com")
        self.reply_domain = reply_domain
        self._csat_secret = csat_secret if listen_url else None
        self.listen_url = listen_url
        self._mailto_unsubscribe = f"mailto:{from_email}?subject=unsubscribe"
        install_redaction(_REDACTED_LOGGERS, _REDACTIONS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        """None without a SendGrid API key."""
        if settings.sendgrid_api_key is None:
            return None
        return cls(settings.sendgrid_api_key, **cls.settings_options(settings))

    @classmethod
    def settings_options(cls, settings: Settings) -> dict[str, Any]:
        """The constructor's options from Settings (everything but the API key)."""
        return dict(
            base_url=settings.sendgrid_base_url,
            from_email=settings.email_from,
            from_name=settings.email_from_name,
            timeout_s=settings.http_timeout_s,
            unsubscribe_url=unsubscribe_url(settings),
            transport=settings.sendgrid_transport,
            reply_domain=settings.reply_domain,
            csat_secret=settings.csat_secret,
            listen_url=settings.listen_url,
        )

    def __repr__(self) -> str:
        return f"SendGridEmailChannel(base_url={self.base_url!r}, from_email={self.from_email!r})"

    def unsubscribe_link(self, token: str | None) -> str:
        """The recipient's own unsubscribe link (``unsubscribe_url`` + their token: the
        subscriptions app's ``/v1/unsubscribe/<token>``); without a subscriptions app or a
        token, a ``mailto:`` to the sender asking to unsubscribe. Never carries a secret of
        ours: the token is the recipient's own, random, stored with them."""
        if self.unsubscribe_url is None or not token:
            return self._mailto_unsubscribe
        return self.unsubscribe_url + quote(token, safe="")

    def rating_link(self, incident_id: int, recipient_id: int, message_id: int) -> str | None:
        """The recipient's signed satisfaction-rating link (``csat_url``), None without a
        rating secret and a listening app URL (the playbook's fallback is used then)."""
        if self._csat_secret is None or not self.listen_url:
            return None
        return rating_link(self.listen_url, self._csat_secret.get_secret_value(),
                           incident_id=incident_id, recipient_id=recipient_id,
                           message_id=message_id)

    # -- checks, no I/O ------------------------------------------------------------------------


    def substitution_problems(self, recipient: OutboundRecipient) -> list[str]:
        """Why this recipient cannot be in a batch: SendGrid's 10,000 bytes of substitutions
        per personalization, in SendGrid's own words (what it answers, with a 400, for the
        whole request)."""
        if not substitution_problems(self.limits, recipient):
            return []
        size = substitutions_size(recipient.substitutions)
        return [f"SendGrid refuses it: {SUBSTITUTIONS_TOO_LARGE} (its substitutions are "
                f"{size:,} bytes)"]

    def recipient_problems(self, recipient: OutboundRecipient) -> list[str]:
        return self.substitution_problems(recipient)

    def build_body(self, batch: OutboundBatch) -> dict[str, Any]:
        """The v3 Mail Send request body of a batch; ValueError when the batch is malformed."""
        recipients = list(batch.recipients)
        if not recipients:
            raise ValueError(f"batch {batch.key} has no recipients")
        if len(recipients) > self.limits.batch_size:
            raise ValueError(
                f"batch {batch.key} has {len(recipients)} recipients, "
                f"over SendGrid's {self.limits.batch_size} per request"
            )
        problems = [f"recipient {r.id}: {p}" for r in recipients
                    for p in self.substitution_problems(r)]
        if problems:
            raise ValueError(f"batch {batch.key}: {'; '.join(problems[:5])}")
        parts = batch.message.parts
        missing = [part for part in self.parts if part not in parts]
        if missing:
            raise ValueError(f"batch {batch.key}: message lacks {', '.join(missing)}")
        body: dict[str, Any] = {
            "personalizations": [
                {
                    "to": [{"email": r.address}],
                    "substitutions": r.substitutions if isinstance(r.substitutions, dict)
                    else dict(r.substitutions),
                    "custom_args": {
                        "crisiscomms_key": batch.key,
                        "crisiscomms_recipient": str(r.id),
                    },
                    **_unsubscribe_headers(r.substitutions.get(UNSUBSCRIBE_TAG)),
                }
                for r in recipients
            ],
            "from": {"email": self.from_email, "name": self.from_name},
            "subject": parts["subject"],
            "content": [
                {"type": "text/plain", "value": parts["text"]},
                {"type": "text/html", "value": parts["html"]},
            ],
            "custom_args": {
                "crisiscomms_key": batch.key,
                "crisiscomms_batch": str(batch.batch_no),
            },
        }
        if self.reply_domain:
            body["reply_to"] = {"email": reply_address(batch.key, self.reply_domain),
                                "name": self.from_name}
        if self.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    # -- I/O -----------------------------------------------------------------------------------

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """One Mail Send request. Provider failures become results; malformed batches raise."""
        body = self.build_body(batch)
        if self.transport == "httpx":
            return self._send_httpx(body)
        client = SendGridAPIClient(api_key=self._api_key.get_secret_value(), host=self.base_url)
        client.client.timeout = self.timeout_s
        try:
            response = client.client.mail.send.post(request_body=body, timeout=self.timeout_s)
        except http_errors.HTTPError as exc:
            return self._error_result(exc.status_code, exc.body, exc.headers)
        except TimeoutError:
            return DeliveryResult.lost(f"SendGrid did not answer within {self.timeout_s} s")
        except URLError as exc:
            reason = f"SendGrid unreachable: {self._scrub(str(exc.reason))}"
            if isinstance(exc.reason, ConnectionRefusedError):
                return DeliveryResult.retry(reason)  # never connected: nothing was sent
            return DeliveryResult.lost(reason)
        except (OSError, http.client.HTTPException) as exc:
            # sent, then reset / closed without an answer: SendGrid may have the batch
            return DeliveryResult.lost(
                f"SendGrid connection failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            )
        status = int(response.status_code)
        if 200 <= status < 300:
            message_id = response.headers.get("X-Message-Id") if response.headers else None
            return DeliveryResult.sent(str(message_id) if message_id else None)
        return self._error_result(status, response.body, response.headers)

    def _send_httpx(self, body: dict[str, Any]) -> DeliveryResult:
        """The same request without the SDK: orjson body, pooled keep-alive connections.

        Measured (``bench/fanout.py``, 1,000 personalizations per request): the SDK spends
        about 7 ms in ``json.dumps`` and 3 ms formatting the whole payload for a DEBUG log line
        it builds even when DEBUG is off, and opens a new connection per request; this path
        spends about 1 ms. Same body, same status mapping, same reasons.
        """
        client = pooled_client(self.timeout_s, base_url=self.base_url)
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}",
                   "Content-Type": "application/json"}
        try:
            response = client.post("/v3/mail/send", content=orjson.dumps(body), headers=headers)
        except httpx.ConnectError as exc:  # never connected: nothing was sent
            return DeliveryResult.retry(f"SendGrid unreachable: {self._scrub(str(exc))}")
        except httpx.ConnectTimeout:
            return DeliveryResult.retry(f"SendGrid unreachable within {self.timeout_s} s")
        except httpx.TimeoutException:
            return DeliveryResult.lost(f"SendGrid did not answer within {self.timeout_s} s")
        except httpx.TransportError as exc:  # reset, closed, garbage instead of HTTP
            return DeliveryResult.lost(
                f"SendGrid connection failed: {type(exc).__name__}: {self._scrub(str(exc))}")
        status = response.status_code
        if 200 <= status < 300:
            message_id = response.headers.get("X-Message-Id")
            return DeliveryResult.sent(str(message_id) if message_id else None)
        return self._error_result(status, response.content, response.headers)

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Crash reconciliation: did SendGrid accept the batch's idempotency key?

        Against the emulator (any base URL but SendGrid's own): ``GET /_emulator/keys/<key>``.
        Real SendGrid has no synchronous "did you accept this request" call: the Email Activity
        API (``GET /v3/messages?query=unique_args['crisiscomms_key']="<key>"``, a paid add-on,
        minutes of delay) or Event Webhook ``processed`` events carrying the same
        ``custom_args`` can confirm it later: the webhook's receiver calls
        ``delivery/ledger.py`` ``confirm_by_key`` with ``crisiscomms_key``. Here the answer for
        real SendGrid is None: unknown, the row becomes ``unconfirmed`` (listed by
        ``crisiscomms failures``) and is not resent blindly.
        Raises ``OSError`` when the emulator cannot be asked right now.
        """
        if urlsplit(self.base_url).hostname in SENDGRID_HOSTS:
            return None
        url = f"{self.base_url}/_emulator/keys/{quote(batch.key, safe='')}"
        bearer = f"Bearer {self._api_key.get_secret_value()}"
        request = Request(url, headers={"Authorization": bearer})
        try:
            with urlopen(request, timeout=self.timeout_s) as response:
                data = json.loads(response.read() or b"{}")
        except HTTPError as exc:
            if exc.code == 404:
                return None
            raise OSError(f"key lookup answered {exc.code}") from None
        except ValueError:
            raise OSError("key lookup answered garbage") from None
        return bool(data.get("accepted")) if isinstance(data, dict) else None

    def _error_result(self, status: int, body: Any, headers: Any) -> DeliveryResult:
        detail = self._scrub(_error_detail(body))
        reason = f"SendGrid answered {status}" + (f": {detail}" if detail else "")
        if status == 429:
            return DeliveryResult.retry(reason, retry_after_s(headers))
        if status >= 500 or status == 408:
            return DeliveryResult.retry(reason, retry_after_s(headers))
        return DeliveryResult.permanent(reason)

    def _scrub(self, text: str) -> str:
        secret = self._api_key.get_secret_value()
        return text.replace(secret, "[redacted]") if secret else text


def _unsubscribe_headers(link: str | None) -> dict[str, dict[str, str]]:
    """Per-personalization ``headers`` (SendGrid v3): RFC 2369 ``List-Unsubscribe`` and, for
    a web link, RFC 8058 one-click (``POST`` to the same URL, which the subscriptions app
    accepts). Nothing when the recipient has no link (the confirmation email)."""
    if not link:
        return {}
    if link.startswith(("https://", "http://")):
        return {"headers": {"List-Unsubscribe": f"<{link}>",
                            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    return {"headers": {"List-Unsubscribe": f"<{link}>"}}


def _error_detail(body: Any) -> str:
    """``errors[].message`` (with ``field``) from a SendGrid error body, else a short excerpt."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return " ".join(str(body).split())[:200]
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return " ".join(str(body).split())[:200]
    details = []
    for error in errors[:10]:
        if not isinstance(error, dict):
            continue
        message = str(error.get("message") or "").strip()
        field = error.get("field")
        details.append(f"{message} (field {field})" if field else message)
    return "; ".join(d for d in details if d)
