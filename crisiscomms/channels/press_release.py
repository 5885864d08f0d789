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

from typing import Any, ClassVar

from crisiscomms.audience.recipients import PRESS_LIST
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Lane


class PressReleaseChannel(SendGridEmailChannel):
    """A press release by email to the press list."""

    recipients: ClassVar[str | None] = PRESS_LIST
    """Journalists, not customers; the rest of what differs from the email follows from it."""
    name: ClassVar[str] = "press"
    order: ClassVar[int] = 40
    lane: ClassVar[Lane] = Lane.parallel
    """A handful of journalists: its own lane, beside X and support, not the email fan-out."""
    default_enabled: ClassVar[bool] = False
    rate_setting: ClassVar[str | None] = None

    @classmethod
    def settings_options(cls, settings: Settings) -> dict[str, Any]:
        """The email channel's options without the subscriptions unsubscribe link (journalists
        are not status page subscribers: theirs is the ``mailto:`` one) and without rating links
        (journalists do not rate our handling of an incident)."""
        return {**super().settings_options(settings), "unsubscribe_url": None,
                "listen_url": None}

    def __repr__(self) -> str:
        return f"PressReleaseChannel(base_url={self.base_url!r}, from_email={self.from_email!r})"
