"""Satisfaction ratings: a signed one-click link per recipient, and the rating it records.

The resolution email carries, for each recipient, ``<listen_url>/v1/csat/<token>`` (the
playbook's recipient field ``csat_url``, filled by the sender like ``unsubscribe_url``); the
template adds ``?rating=1`` … ``?rating=5``. The token is
``<incident>.<recipient>.<message>.<HMAC-SHA256(csat_secret, those three)>`` (128 bits of the
MAC, base64url): nothing is stored per link, a link cannot be forged without the secret, and
changing the recipient (or incident, or message) breaks it, so one person's link never rates
for another. The ids it shows are our row numbers, which tell an outsider nothing useful.

Opening the link (GET) only shows the choice with a button: mail scanners and link
previewers that fetch every URL never vote. The button POSTs, which records a ``Reaction``
(source ``csat``, ``rating``, the optional comment as text), **one per recipient per
incident**: source id ``<incident>:<recipient>``, and a second rating *replaces* the first
(people change their mind when the fix holds, or does not; the latest word is the one we
judge by). Sentiment follows the rating (1-2 negative, 3 neutral, 4-5 positive); triage of
the comment can still flag it for a human.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from crisiscomms.reactions.models import ReactionSource, Sentiment
from crisiscomms.reactions.service import ReactionIn

RATINGS = range(1, 6)
MAX_COMMENT_CHARS = 2000
_MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class CsatToken:
    incident_id: int
    recipient_id: int
    message_id: int


def _mac(secret: str, incident_id: int, recipient_id: int, message_id: int) -> str:
    material = f"csat\x1f{incident_id}\x1f{recipient_id}\x1f{message_id}".encode()
    digest = hmac.new(secret.encode(), material, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(secret: str, *, incident_id: int, recipient_id: int, message_id: int) -> str:
    """The recipient's rating token (deterministic: the same email resent carries the same)."""
    mac = _mac(secret, incident_id, recipient_id, message_id)
    return f"{incident_id}.{recipient_id}.{message_id}.{mac}"


def read_token(secret: str, token: str) -> CsatToken | None:
    """What a token names, or None when it is malformed or its MAC does not verify."""
    parts = token.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 18 for p in parts[:3]):
        return None
    incident_id, recipient_id, message_id = (int(p) for p in parts[:3])
    expected = _mac(secret, incident_id, recipient_id, message_id)
    if not hmac.compare_digest(expected.encode(), parts[3].encode()):
        return None
    return CsatToken(incident_id, recipient_id, message_id)


def rating_link(base_url: str, secret: str, *, incident_id: int, recipient_id: int,
                message_id: int) -> str:
    """``<base_url>/v1/csat/<token>``: the value of the ``csat_url`` recipient field."""
    token = make_token(secret, incident_id=incident_id, recipient_id=recipient_id,
                       message_id=message_id)
    return f"{base_url.rstrip('/')}/v1/csat/{token}"


def sentiment_of(rating: int) -> Sentiment:
    if rating <= 2:
        return Sentiment.negative
    return Sentiment.neutral if rating == 3 else Sentiment.positive


def rating_reaction(token: CsatToken, rating: int, comment: str, *,
                    author: str) -> ReactionIn:
    """The reaction a rating is (checked by the caller: ``rating`` in 1-5)."""
    return ReactionIn(
        source=ReactionSource.csat,
        source_id=f"{token.incident_id}:{token.recipient_id}",
        author=author, text=comment[:MAX_COMMENT_CHARS], rating=rating,
        incident_id=token.incident_id, message_id=token.message_id,
        recipient_id=token.recipient_id, sentiment=sentiment_of(rating))
