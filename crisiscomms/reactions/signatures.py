"""Who sent this webhook: the signature checks of the listening receivers.

Each check takes the raw body exactly as it came off the wire (a re-serialised JSON would not
verify) and answers with a :class:`SignatureError` whose ``status`` is what the receiver
answers: 401 when the request carries no usable credentials (no header, no configured key),
403 when it carries credentials that do not verify or a timestamp outside the replay window.
Nothing here logs: a secret or a signature never reaches a log line.

- **SendGrid Event Webhook**: ECDSA P-256 with SHA-256 over ``timestamp + body``; the
  signature (base64 DER) in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
  ``X-Twilio-Email-Event-Webhook-Timestamp``, the public key (base64 DER
  SubjectPublicKeyInfo) from SendGrid's settings page (``Settings.sendgrid_webhook_public_key``).
- **Zendesk** webhooks: ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(secret,
  timestamp + body)), timestamp in ``X-Zendesk-Webhook-Signature-Timestamp``.
- **Freshdesk** has no signature of its own: its automation sends our headers,
  ``X-Crisiscomms-Signature`` (the same HMAC construction as Zendesk's) and
  ``X-Crisiscomms-Timestamp``; docs/listening.md says how to compute them.
- **Basic auth** (SendGrid Inbound Parse, which cannot sign): compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
ZENDESK_SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
OUR_SIGNATURE_HEADER = "X-Crisiscomms-Signature"
OUR_TIMESTAMP_HEADER = "X-Crisiscomms-Timestamp"


@dataclass(frozen=True)
class SignatureError(Exception):
    """A webhook refused before anything is read from it; ``status`` is 401 or 403."""

    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


@lru_cache(maxsize=8)
def load_sendgrid_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """The verification key SendGrid shows (base64 DER, or PEM); ValueError when it is not a
    P-256 public key. Cached: the receiver verifies thousands of requests with one key."""
    text = encoded.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError("the SendGrid webhook verification key is not a base64 DER "
                         "public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("the SendGrid webhook verification key is not an ECDSA P-256 key")
    return key


def sendgrid_signature_valid(public_key: str, body: bytes, signature: str,
                             timestamp: str) -> bool:
    """Does ``signature`` (base64 DER ECDSA) verify ``timestamp + body`` under SendGrid's key?
    The bare cryptographic check, as SendGrid's own libraries do it; no replay window."""
    try:
        der = base64.b64decode(signature, validate=True)
        load_sendgrid_public_key(public_key).verify(
            der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def check_timestamp(timestamp: str | None, *, max_age_s: float, now: float | None = None,
                    header: str) -> None:
    """Refuse a missing, malformed or stale signature timestamp (Unix seconds): an old signed
    request replayed later must not be accepted. A few seconds of clock skew either way is
    covered by the same window."""
    if not timestamp:
        raise SignatureError(401, f"{header} is missing")
    try:
        moment = float(timestamp)
    except ValueError:
        raise SignatureError(403, f"{header} is not a Unix timestamp") from None
    now = time.time() if now is None else now
    if abs(now - moment) > max_age_s:
        raise SignatureError(403, f"{header} is outside the {max_age_s:g} s replay window")


def check_sendgrid_headers(public_key: str | None, signature: str | None,
                           timestamp: str | None, *, max_age_s: float,
                           now: float | None = None) -> None:
    """What can be refused before the body is read: no key configured, no signature, a
    timestamp outside the replay window; raises :class:`SignatureError`."""
    if not public_key:
        raise SignatureError(401, "no SendGrid webhook verification key is configured")
    if not signature:
        raise SignatureError(401, f"{SENDGRID_SIGNATURE_HEADER} is missing")
    check_timestamp(timestamp, max_age_s=max_age_s, now=now, header=SENDGRID_TIMESTAMP_HEADER)


def verify_sendgrid(public_key: str | None, body: bytes, signature: str | None,
                    timestamp: str | None, *, max_age_s: float,
                    now: float | None = None) -> None:
    """The Event Webhook check; raises :class:`SignatureError` (nothing to store then)."""
    check_sendgrid_headers(public_key, signature, timestamp, max_age_s=max_age_s, now=now)
    assert public_key is not None and signature is not None and timestamp is not None
    if not sendgrid_signature_valid(public_key, body, signature, timestamp):
        raise SignatureError(403, "the SendGrid event signature does not verify")


def hmac_signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, timestamp + body)): Zendesk's construction, and ours."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_hmac(secret: str | None, body: bytes, signature: str | None,
                timestamp: str | None, *, max_age_s: float, source: str,
                signature_header: str, timestamp_header: str,
                now: float | None = None) -> None:
    """A Zendesk-style HMAC check; raises :class:`SignatureError`.

    Zendesk's timestamp is an ISO 8601 date (``2026-11-23T09:40:00Z``); ours is Unix
    seconds: both are accepted for the replay window, and the signature covers the header's
    text exactly as sent."""
    check_hmac_headers(secret, signature, timestamp, max_age_s=max_age_s, source=source,
                       signature_header=signature_header, timestamp_header=timestamp_header,
                       now=now)
    assert secret is not None and signature is not None and timestamp is not None
    expected = hmac_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError(403, f"the {source} signature does not verify")


def check_hmac_headers(secret: str | None, signature: str | None, timestamp: str | None, *,
                       max_age_s: float, source: str, signature_header: str,
                       timestamp_header: str, now: float | None = None) -> None:
    """What can be refused before the body is read (see :func:`verify_hmac`)."""
    if not secret:
        raise SignatureError(401, f"no {source} webhook secret is configured")
    if not signature:
        raise SignatureError(401, f"{signature_header} is missing")
    check_timestamp(_unix_text(timestamp), max_age_s=max_age_s, now=now, header=timestamp_header)


def _unix_text(timestamp: str | None) -> str | None:
    """Unix seconds of a Unix or ISO 8601 timestamp, as text (unparseable: as it came)."""
    if not timestamp:
        return timestamp
    try:
        float(timestamp)
        return timestamp
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(moment.timestamp())


def verify_basic_auth(user: str | None, password: str | None, authorization: str | None) -> None:
    """HTTP basic auth against the configured pair, in constant time; raises
    :class:`SignatureError` (401: SendGrid retries a refused Parse POST for up to 3 days)."""
    if not user or not password:
        raise SignatureError(401, "no Inbound Parse credentials are configured")
    if not authorization or not authorization.lower().startswith("basic "):
        raise SignatureError(401, "basic auth credentials are missing")
    try:
        given = base64.b64decode(authorization[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(401, "basic auth credentials are malformed") from None
    expected = f"{user}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise SignatureError(403, "basic auth credentials are wrong")
