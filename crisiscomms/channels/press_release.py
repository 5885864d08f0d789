"""The press release: the recall (or any) notice for traditional media, as HTML and plain text,
sent by email to the recipients on the ``press`` list.

It is the SendGrid email channel under another name: the same SDK, batching, idempotency keys
and reconciliation, so a press release is exactly as reliable as the customer email. The
ledger plans it to ``Recipient.lists`` containing ``press`` (its ``recipients``), never to
the customer list; the templates are ``<playbook>/<stage>/press.{subject,html,text}.<locale>.j2``
and must carry a media contact (the playbook's ``must_carry.press``). A playbook stage publishes
it only when it names it (``default_enabled`` is false).
"""

from __future__ import annotations

from typing import ClassVar, Self

from crisiscomms.audience.recipients import PRESS_LIST
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Lane


class PressReleaseChannel(SendGridEmailChannel):
    """A press release by email to the press list."""

    name: ClassVar[str] = "press"
    order: ClassVar[int] = 40
    lane: ClassVar[Lane] = Lane.parallel
    """A handful of journalists: its own lane, beside X and support, not the email fan-out."""
    recipients: ClassVar[str | None] = PRESS_LIST
    default_enabled: ClassVar[bool] = False
    rate_setting: ClassVar[str | None] = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        """None without a SendGrid API key; no subscriptions unsubscribe link (journalists are
        not status page subscribers: theirs is the ``mailto:`` one)."""
        if settings.sendgrid_api_key is None:
            return None
        return cls(
            settings.sendgrid_api_key,
            base_url=settings.sendgrid_base_url,
            from_email=settings.email_from,
            from_name=settings.email_from_name,
            timeout_s=settings.http_timeout_s,
            transport=settings.sendgrid_transport,
        )

    def __repr__(self) -> str:
        return f"PressReleaseChannel(base_url={self.base_url!r}, from_email={self.from_email!r})"
