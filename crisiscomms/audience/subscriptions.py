"""Email subscriptions to the status page: double opt-in, per-component, one row per address.

A subscriber is a :class:`~crisiscomms.models.Recipient` row: ``consent`` is False until the
confirmation link is opened (``confirmed_at``), ``components`` lists what they follow (empty:
everything), ``unsubscribe_token`` backs the unsubscribe link in every email. Incident updates
reach subscribers through the ledger's audience query (``ledger.stream_audience(components=)``).

Rules: a malformed address or an unknown component is refused (SubscriptionError); a repeated
request is ignored (already subscribed) or resends the confirmation at most once per
``RESEND_AFTER``; the answer to the requester is the same either way, so the form never tells
who is subscribed. The confirmation email is an approved template
(``templates/_statuspage/subscribe/email.<part>.<locale>.j2``) sent through the email channel.

Links: the confirmation token travels only in the email; the row keeps its SHA-256
(:func:`hash_token`), so a copy of the database confirms nobody. It is single use, expires
``CONFIRM_TTL`` after it was sent, and every resend rotates it (the older link dies). A link is
looked at (:func:`pending_for`, :func:`subscriber_for`: read only, for the page with the
button) apart from being used (:func:`confirm`, :func:`unsubscribe`), because mail scanners
open every link. :func:`mailbox_key` names the mailbox behind an address (``+tag`` and case
folded) for rate limits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlmodel import Session, col, select

from crisiscomms.audience.models import Recipient, new_token
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.delivery.contract import (
    Channel,
    DeliveryResult,
    OutboundBatch,
    OutboundRecipient,
    RenderedMessage,
)
from crisiscomms.incident.facts import FactSheet
from crisiscomms.render.approvals import ApprovalLock
from crisiscomms.render.environment import content_hash, make_environment
from crisiscomms.render.loader import CheckingLoader
from crisiscomms.statuspage.model import short_id

RESEND_AFTER = timedelta(hours=1)
CONFIRM_TTL = timedelta(hours=48)
"""A confirmation link works this long after it was sent."""
TEMPLATE_DIR = "_statuspage/subscribe"
EMAIL_PARTS = ("subject", "text", "html")
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


class SubscriptionError(CrisisCommsError):
    """A subscribe request that cannot be accepted (bad address, unknown component)."""


class LinkError(SubscriptionError):
    """A confirmation or unsubscribe link that cannot be used: ``reason`` is ``unknown``
    (never issued, used, or replaced by a newer one) or ``expired``."""


def hash_token(token: str) -> str:
    """What the database keeps of a link token: its SHA-256, hex (64 characters)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mailbox_key(address: str) -> str:
    """The mailbox an address reaches, for rate limits: case folded, ``+tag`` dropped
    (``Name+news@Example.org`` → ``name@example.org``). Not how the address is stored."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local.split('+', 1)[0].casefold()}@{domain.casefold()}"


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None \
        else moment


@dataclass(frozen=True)
class SubscribeResult:
    action: Literal["pending", "resent", "ignored"]
    recipient_id: int
    confirm_token: str | None = None
    """Set when a confirmation email should go out now."""


def normalise_email(raw: str) -> str:
    """The address as stored: trimmed and lower-cased (no duplicate subscriber by case);
    SubscriptionError when malformed."""
    email = (raw or "").strip()
    if len(email) > 254 or not _EMAIL_RE.match(email) or ".." in email:
        raise SubscriptionError("that email address does not look right", field="email")
    return email.lower()


def normalise_components(names: Iterable[str], known: Iterable[str] | None) -> list[str]:
    """The chosen components, de-duplicated in order; unknown ones are refused."""
    chosen = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    bad = [n for n in chosen if "," in n]
    if known is not None:
        known_set = set(known)
        bad += [n for n in chosen if n not in known_set]
    if bad:
        unknown = sorted(set(bad))
        raise SubscriptionError(f"unknown components: {', '.join(unknown)}",
                                field="components", values=unknown)
    return chosen


def subscribe(
    session: Session,
    *,
    email: str,
    components: Sequence[str] = (),
    locale: str = "en",
    known_components: Iterable[str] | None = None,
    now: datetime | None = None,
) -> SubscribeResult:
    """Record a subscribe request; checks first, writes after."""
    address = normalise_email(email)
    chosen = normalise_components(components, known_components)
    if not re.match(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$", locale or ""):
        locale = "en"
    now = now or utcnow()
    existing = session.exec(
        select(Recipient).where(col(Recipient.email) == address)
    ).first()
    token = new_token()  # the email's link; the row keeps its hash
    if existing is None:
        row = Recipient(email=address, locale=locale, consent=False, confirmed_at=None,
                        components=",".join(chosen) or None, confirm_token=hash_token(token),
                        confirm_sent_at=now, lists=None)
        session.add(row)
        session.flush()
        assert row.id is not None
        return SubscribeResult("pending", row.id, token)
    assert existing.id is not None
    if existing.consent:  # subscribed already (or an imported customer): nothing to do
        return SubscribeResult("ignored", existing.id)
    if existing.confirm_token is not None:  # pending: resend, but not more than once an hour
        sent = _aware(existing.confirm_sent_at)
        if sent is not None and now - sent < RESEND_AFTER:
            return SubscribeResult("ignored", existing.id)
        existing.confirm_token = hash_token(token)  # rotated: the older link dies
        existing.confirm_sent_at = now
        existing.components = ",".join(chosen) or None
        return SubscribeResult("resent", existing.id, token)
    # unsubscribed before: a new double opt-in
    existing.confirm_token = hash_token(token)
    existing.confirm_sent_at = now
    existing.components = ",".join(chosen) or None
    existing.locale = locale
    return SubscribeResult("pending", existing.id, token)


def pending_for(session: Session, token: str, now: datetime | None = None) -> Recipient:
    """The pending subscription a confirmation link belongs to, changing nothing (the page
    with the button); LinkError when it is unknown, used, replaced or expired."""
    if not token or len(token) > 128:
        raise LinkError("this link is not valid", field="token", reason="unknown")
    row = session.exec(
        select(Recipient).where(col(Recipient.confirm_token) == hash_token(token))
    ).first()
    if row is None:
        raise LinkError("this link is not valid", field="token", reason="unknown")
    sent = _aware(row.confirm_sent_at)
    if sent is None or (now or utcnow()) - sent > CONFIRM_TTL:
        raise LinkError("this link has expired", field="token", reason="expired")
    return row


def confirm(session: Session, token: str, now: datetime | None = None) -> Recipient:
    """Confirm the subscription behind ``token`` (once: the token is spent); LinkError when
    the link is unknown, used, replaced or expired."""
    now = now or utcnow()
    row = pending_for(session, token, now)
    row.consent = True
    row.confirmed_at = now
    row.confirm_token = None
    return row


def subscriber_for(session: Session, token: str) -> Recipient | None:
    """The recipient an unsubscribe link belongs to, changing nothing; None when unknown."""
    if not token or len(token) > 64:
        return None
    return session.exec(
        select(Recipient).where(col(Recipient.unsubscribe_token) == token)
    ).first()


def unsubscribe(session: Session, token: str) -> Recipient | None:
    """Stop every status email to the recipient behind ``token`` (idempotent: the link in
    every email keeps working, RFC 8058); None when the link is unknown."""
    row = subscriber_for(session, token)
    if row is None:
        return None
    row.consent = False
    row.confirm_token = None
    return row


class ConfirmationTemplates:
    """The confirmation email's approved templates (``TEMPLATE_DIR``), compiled once.

    Compiling them costs about 15 ms of interpreter time per email (three templates), which a
    crowd of subscribers would pay once each, holding the interpreter from the requests. Here
    Jinja keeps the compiled templates; every use still reads each template again, hashes it
    and asks ``approvals`` (the loader's ``uptodate``), so an edited template is refused and a
    re-approved one is compiled afresh exactly as before: only compiling is saved. Safe to
    share between threads."""

    def __init__(self, templates_dir: Path, approvals: ApprovalLock) -> None:
        self.templates_dir = templates_dir
        self.approvals = approvals
        self._loader = CheckingLoader(templates_dir, approvals)
        self._env = make_environment(templates_dir, loader=self._loader)
        self._chosen: dict[tuple[str, str], str] = {}

    def _locale(self, channel: str, locale: str) -> str:
        """The locale's templates when they exist, else English (looked up once)."""
        lang = locale.replace("_", "-").split("-")[0].lower()
        chosen = self._chosen.get((channel, lang))
        if chosen is None:
            exists = (self.templates_dir / TEMPLATE_DIR / f"{channel}.text.{lang}.j2").is_file()
            chosen = self._chosen[(channel, lang)] = lang if exists else "en"
        return chosen

    def message(
        self,
        *,
        channel: str,
        locale: str,
        organization: str,
        page_name: str,
        confirm_url: str,
        unsubscribe_url: str,
        components: Sequence[str],
    ) -> RenderedMessage:
        """The confirmation email (the locale's, else English) for the email channel named
        ``channel`` (``TEMPLATE_DIR/<channel>.<part>.<locale>.j2``); ApprovalError when any
        template it loads is not the approved text."""
        chosen = self._locale(channel, locale)
        context = {"locale": chosen, "organization": organization, "page_name": page_name,
                   "confirm_url": confirm_url, "unsubscribe_url": unsubscribe_url,
                   "components": list(components)}
        parts: dict[str, str] = {}
        with self._loader.recording() as loaded:
            for part in EMAIL_PARTS:
                name = f"{TEMPLATE_DIR}/{channel}.{part}.{chosen}.j2"
                parts[part] = self._env.get_template(name).render(context).strip()
        return RenderedMessage(playbook="_statuspage", stage="subscribe", channel=channel,
                               locale=chosen, parts=parts,
                               content_hash=content_hash(channel, chosen, parts, loaded))


def confirmation_message(
    templates_dir: Path,
    *,
    channel: str,
    locale: str,
    organization: str,
    page_name: str,
    confirm_url: str,
    unsubscribe_url: str,
    components: Sequence[str],
    approvals: ApprovalLock | None = None,
) -> RenderedMessage:
    """One confirmation email, compiling its templates for it (a server keeps a
    :class:`ConfirmationTemplates` instead). ``approvals``: the lock already read (reading it
    verifies every signature of the workspace, ~0.5 ms each)."""
    templates = ConfirmationTemplates(templates_dir, approvals or ApprovalLock(templates_dir))
    return templates.message(channel=channel, locale=locale, organization=organization,
                             page_name=page_name, confirm_url=confirm_url,
                             unsubscribe_url=unsubscribe_url, components=components)


def send_confirmation(
    channel: Channel, message: RenderedMessage, recipient_id: int, address: str,
    *, organization: str, token: str,
) -> DeliveryResult:
    """One email through the email channel; its key is stable per confirmation token."""
    facts = FactSheet(incident_ref="SUBSCRIBE", organization=organization,
                      title="Status page subscription", severity="minor",
                      started_at=datetime.now(UTC))
    batch = OutboundBatch(
        key=f"subscribe-{recipient_id}-{short_id(token)}", batch_no=0, facts=facts,
        incident_status="investigating", message=message,
        recipients=[OutboundRecipient(id=recipient_id, address=address)],
    )
    return channel.send(batch)
