"""Who sent this event: the signature and token checks of the intake API.

Each check takes the raw body exactly as it came off the wire (a re-serialised JSON would not
verify) and every valid key of the source (``Source.secrets``, newest first: during a rotation
the previous key still verifies). A refusal is an :class:`~crisiscomms.core.errors.IntakeError`
with status 401 whose ``field`` is the header at fault and whose message says what is wrong
(missing, malformed, expired, from the future, no key matched): it never repeats a secret, a
token or a signature, and nothing here logs. Comparisons are constant-time.

- **Standard Webhooks** (https://www.standardwebhooks.com; our own events and recall feeds):
  secret ``whsec_<base64 of 24-64 random bytes>``; ``webhook-signature`` is a space-separated
  list of ``v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}">`` (one
  match is enough); ``webhook-timestamp`` in Unix seconds, refused outside the replay window
  either way; ``webhook-id`` is the delivery id the replay memory keeps. Hand-rolled: the
  ``standardwebhooks`` package fixes its own clock and 5-minute tolerance and takes one
  secret, where we need ``now``, our window and every key of a rotation.
- **Bearer tokens** (``Authorization: Bearer <token>``): Alertmanager's
  ``http_config.authorization``, Grafana's contact point "Authorization header".
- **PagerDuty v3**: ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>[,v1=...]``
  (several during PagerDuty's own rotation). It signs no timestamp and no id: the replay memory
  keeps the signed ``event.id`` of the body (PagerDuty's ``X-Webhook-Id`` header names the
  same delivery but is not signed).
- **Grafana** (12.0 and later, contact point "HMAC signature"): hex HMAC-SHA256 of
  ``"{timestamp}:{raw body}"`` in ``X-Grafana-Alerting-Signature``, the Unix timestamp in the
  header the contact point names (we ask for ``X-Grafana-Alerting-Timestamp``; Grafana has no
  default). A signature without a timestamp is refused: it could be replayed for ever.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from crisiscomms.core.errors import IntakeError

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
NEW_KEY_BYTES = 32
MAX_DELIVERY_ID = 128
"""Longest delivery id kept (``SeenDelivery.delivery_id``)."""
MAX_SIGNATURES = 16
"""Signatures a header may carry (a rotation needs two); more is refused as malformed."""
AUTHORIZATION = "Authorization"
PAGERDUTY_SIGNATURE = "X-PagerDuty-Signature"
PAGERDUTY_WEBHOOK_ID = "X-Webhook-Id"
GRAFANA_SIGNATURE = "X-Grafana-Alerting-Signature"
GRAFANA_TIMESTAMP = "X-Grafana-Alerting-Timestamp"
GRAFANA_TIMESTAMP_ALIASES = (GRAFANA_TIMESTAMP, "X-Grafana-Alerting-Signature-Timestamp")
"""The timestamp header names accepted: ours, and the one Grafana's provisioning docs show."""

_DELIVERY_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_DIGITS = re.compile(r"^[0-9]{1,12}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def refuse(header: str, reason: str) -> IntakeError:
    """The 401 of a request whose ``header`` is at fault; ``reason`` never holds its value."""
    return IntakeError(f"{header}: {reason}", status=401, field=header, reason=reason)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (Starlette's headers are case-insensitive already;
    a plain dict is searched)."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = headers.get(lower)
        if value is None:
            for key, found in headers.items():
                if key.lower() == lower:
                    return found
    return value


# --- Standard Webhooks ------------------------------------------------------------------


def new_secret(nbytes: int = NEW_KEY_BYTES) -> str:
    """A fresh Standard Webhooks secret, ``whsec_`` + base64 of ``nbytes`` random bytes."""
    if not MIN_KEY_BYTES <= nbytes <= MAX_KEY_BYTES:
        raise ValueError(f"a key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(nbytes)).decode("ascii")


@lru_cache(maxsize=256)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError (without the secret) when it is not
    one. Cached: the API verifies thousands of requests with a handful of keys."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a Standard Webhooks secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a Standard Webhooks secret is {SECRET_PREFIX} followed by "
                         "base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a Standard Webhooks key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} "
                         f"bytes, this one {len(key)}")
    return key


def _standard_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    return b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), body)


def sign_standard(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``webhook-signature`` header value of a request (``v1,<base64>``): for senders,
    tests, the bench and the README's curl."""
    digest = hmac.digest(secret_key(secret), _standard_content(msg_id, str(timestamp), body),
                         "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class StandardHeaders:
    """The three headers of a Standard Webhooks request, checked for form and freshness."""

    msg_id: str
    timestamp: str
    signatures: tuple[bytes, ...]

    def signed_by(self, body: bytes, secrets: Sequence[str]) -> bool:
        """Does one of ``secrets`` (``whsec_``; malformed ones never match) sign ``body``?"""
        content = _standard_content(self.msg_id, self.timestamp, body)
        for secret in secrets:
            try:
                key = secret_key(secret)
            except ValueError:
                continue
            expected = hmac.digest(key, content, "sha256")
            if any(hmac.compare_digest(expected, given) for given in self.signatures):
                return True
        return False


def standard_headers(headers: Mapping[str, str], *, now: float,
                     window_s: float) -> StandardHeaders:
    """The request's Standard Webhooks headers, or a 401 naming the one missing, malformed,
    expired or from the future (checked before any HMAC is computed)."""
    msg_id = header_value(headers, WEBHOOK_ID)
    timestamp = header_value(headers, WEBHOOK_TIMESTAMP)
    signature = header_value(headers, WEBHOOK_SIGNATURE)
    for name, value in ((WEBHOOK_ID, msg_id), (WEBHOOK_TIMESTAMP, timestamp),
                        (WEBHOOK_SIGNATURE, signature)):
        if not value:
            raise refuse(name, "is missing (sign the request the Standard Webhooks way)")
    assert msg_id is not None and timestamp is not None and signature is not None
    if not _DELIVERY_ID.match(msg_id):
        raise refuse(WEBHOOK_ID, f"is malformed: 1 to {MAX_DELIVERY_ID} visible ASCII "
                                 "characters")
    check_timestamp(WEBHOOK_TIMESTAMP, timestamp, now=now, window_s=window_s)
    given: list[bytes] = []
    entries = signature.split()
    if len(entries) > MAX_SIGNATURES:
        raise refuse(WEBHOOK_SIGNATURE, f"is malformed: more than {MAX_SIGNATURES} signatures")
    for entry in entries:
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric): not ours, skipped as the spec says
        try:
            given.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not given:
        raise refuse(WEBHOOK_SIGNATURE, "is malformed: no v1,<base64> signature in it")
    return StandardHeaders(msg_id, timestamp, tuple(given))


def check_timestamp(header: str, value: str, *, now: float, window_s: float) -> int:
    """A Unix-seconds timestamp inside the replay window (either way), or a 401."""
    value = value.strip()
    if not _DIGITS.match(value):
        raise refuse(header, "is malformed: a Unix timestamp in seconds")
    moment = int(value)
    if now - moment > window_s:
        raise refuse(header, f"is expired: older than the {window_s:g} s replay window")
    if moment - now > window_s:
        raise refuse(header, f"is in the future: ahead of this clock by more than "
                             f"{window_s:g} s")
    return moment


def verify_standard(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], *,
                    now: float, window_s: float) -> str:
    """The ``webhook-id`` of a request one of ``secrets`` signed; a 401 otherwise."""
    parsed = standard_headers(headers, now=now, window_s=window_s)
    if not parsed.signed_by(body, secrets):
        raise refuse(WEBHOOK_SIGNATURE, "no key matched: the signature does not verify "
                                        "(wrong key, or the body changed)")
    return parsed.msg_id


# --- Bearer tokens ----------------------------------------------------------------------


def new_token() -> str:
    """A fresh bearer token (256 random bits, URL-safe): Alertmanager, Grafana."""
    return random.token_urlsafe(32)


def verify_bearer(headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """``Authorization: Bearer <token>`` with one of ``secrets``; a 401 otherwise."""
    value = header_value(headers, AUTHORIZATION)
    if not value:
        raise refuse(AUTHORIZATION, "is missing (send Authorization: Bearer <token>)")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise refuse(AUTHORIZATION, "is malformed: not a Bearer token")
    given = token.encode()
    if not any(hmac.compare_digest(given, secret.encode()) for secret in secrets):
        raise refuse(AUTHORIZATION, "no key matched: the bearer token is not this source's")


# --- PagerDuty v3 -----------------------------------------------------------------------


def sign_pagerduty(secret: str, body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value PagerDuty sends for ``body`` (tests, the bench)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_pagerduty(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """One ``v1=`` signature of ``X-PagerDuty-Signature`` made by one of ``secrets``."""
    value = header_value(headers, PAGERDUTY_SIGNATURE)
    if not value:
        raise refuse(PAGERDUTY_SIGNATURE, "is missing (PagerDuty v3 webhooks sign every "
                                          "delivery)")
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if len(entries) > MAX_SIGNATURES:
        raise refuse(PAGERDUTY_SIGNATURE, f"is malformed: more than {MAX_SIGNATURES} "
                                          "signatures")
    given = [e[3:].lower().encode() for e in entries if e.startswith("v1=") and
             _HEX64.match(e[3:])]
    if not given:
        raise refuse(PAGERDUTY_SIGNATURE, "is malformed: no v1=<hex> signature in it")
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, g) for g in given):
            return
    raise refuse(PAGERDUTY_SIGNATURE, "no key matched: the signature does not verify "
                                      "(wrong secret, or the body changed)")


# --- Grafana ----------------------------------------------------------------------------


def sign_grafana(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Grafana-Alerting-Signature`` value Grafana sends (with a timestamp header)."""
    return hmac.new(secret.encode(), b"%s:%s" % (str(timestamp).encode(), body),
                    hashlib.sha256).hexdigest()


def grafana_signed(headers: Mapping[str, str]) -> bool:
    """Does the request carry Grafana's HMAC signature (else: a bearer token)?"""
    return header_value(headers, GRAFANA_SIGNATURE) is not None


def verify_grafana(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], *,
                   now: float, window_s: float) -> str:
    """Grafana's HMAC signature with its timestamp; returns a delivery id for the replay
    memory (a digest of timestamp and body: the same signed request twice is a replay, a
    repeated notification has a new timestamp)."""
    signature = (header_value(headers, GRAFANA_SIGNATURE) or "").strip().lower()
    if not signature:
        raise refuse(GRAFANA_SIGNATURE, "is missing")
    timestamp = None
    for name in GRAFANA_TIMESTAMP_ALIASES:
        timestamp = header_value(headers, name)
        if timestamp is not None:
            check_timestamp(name, timestamp, now=now, window_s=window_s)
            timestamp = timestamp.strip()
            break
    if timestamp is None:
        raise refuse(GRAFANA_TIMESTAMP, "is missing: set the contact point's HMAC "
                                        f"\"Timestamp header\" to {GRAFANA_TIMESTAMP}")
    if not _HEX64.match(signature):
        raise refuse(GRAFANA_SIGNATURE, "is malformed: not a hex HMAC-SHA256")
    given = signature.encode()
    for secret in secrets:
        if hmac.compare_digest(sign_grafana(secret, timestamp, body).encode(), given):
            return "grafana-" + hashlib.sha256(b"%s:%s" % (timestamp.encode(), body)
                                               ).hexdigest()[:40]
    raise refuse(GRAFANA_SIGNATURE, "no key matched: the signature does not verify "
                                    "(wrong secret, or the body changed)")
