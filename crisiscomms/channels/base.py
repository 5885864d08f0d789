"""What every channel class shares: the registry's declarations with their usual values.

A channel subclasses :class:`BaseChannel` and declares only what differs (``name``, ``order``,
its ``parts`` and ``limits``, and e.g. ``recipients`` for a channel that addresses people);
the protocol it implements is :class:`crisiscomms.delivery.contract.Channel`.
"""

from __future__ import annotations

from typing import ClassVar

from crisiscomms.delivery.contract import (
    ChannelLimits,
    Lane,
    OutboundRecipient,
    substitution_problems,
)


class BaseChannel:
    """Defaults: a broadcast channel (one message per language, nobody addressed) in its own
    lane after the status page, on in a stage that names no channels, not threaded, no rate
    setting, one ``text`` part and no limits."""

    name: ClassVar[str]
    order: ClassVar[int]
    lane: ClassVar[Lane] = Lane.parallel
    recipients: ClassVar[str | None] = None
    address: ClassVar[str] = "email"
    personal: ClassVar[bool] = False
    default_enabled: ClassVar[bool] = True
    threaded: ClassVar[bool] = False
    rate_setting: ClassVar[str | None] = None
    parts: ClassVar[tuple[str, ...]] = ("text",)
    limits: ClassVar[ChannelLimits] = ChannelLimits()

    def recipient_problems(self, recipient: OutboundRecipient) -> list[str]:
        """Why a request holding ``recipient`` would be refused: by default, substitutions
        over ``limits.max_substitution_bytes``. A channel may say it in its provider's words."""
        return substitution_problems(self.limits, recipient)
