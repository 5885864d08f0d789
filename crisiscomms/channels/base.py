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
    RenderedMessage,
    substitution_problems,
)
from crisiscomms.render.limits import limit_problems


class BaseChannel:
    """Defaults: a broadcast channel (one message per language, nobody addressed) in its own
    lane after the status page, on in a stage that names no channels, not threaded, no rate
    setting, one ``text`` part (required) and no limits."""

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
    required_parts: ClassVar[tuple[str, ...]] = ("text",)
    """Parts every rendered message must have (:meth:`validate` names each one missing)."""

    def validate(self, message: RenderedMessage) -> list[str]:
        """Why ``message`` cannot go out here: a part over its limit, a required part missing.
        A channel with checks of its own adds them after these."""
        problems = limit_problems(self.limits, message.parts)
        problems.extend(f"{part} is missing" for part in self.required_parts
                        if part not in message.parts)
        return problems

    def recipient_problems(self, recipient: OutboundRecipient) -> list[str]:
        """Why a request holding ``recipient`` would be refused: by default, substitutions
        over ``limits.max_substitution_bytes``. A channel may say it in its provider's words."""
        return substitution_problems(self.limits, recipient)
