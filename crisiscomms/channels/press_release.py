"""The press release: the recall (or any) notice for traditional media, as HTML and plain text,
sent by email to the recipients on the ``press`` list.

It is the SendGrid email channel under another name: the same SDK, batching, idempotency keys
and reconciliation, so a press release is exactly as reliable as the customer email. The
ledger plans it to ``Recipient.lists`` containing ``press`` (``ledger.CHANNEL_LISTS``), never to
the customer list; the templates are ``<playbook>/<stage>/press.{subject,html,text}.<locale>.j2``
and must carry a media contact (the playbook's ``must_carry.press``).
"""

from __future__ import annotations

from typing import ClassVar

from crisiscomms.channels.sendgrid_email import SendGridEmailChannel


class PressReleaseChannel(SendGridEmailChannel):
    """A press release by email to the press list."""

    name: ClassVar[str] = "press"

    def __repr__(self) -> str:
        return f"PressReleaseChannel(base_url={self.base_url!r}, from_email={self.from_email!r})"
