"""Channels: one class per channel behind the :class:`Channel` protocol, and their registry.

``CHANNEL_CLASSES`` lists them in publishing order (status page first: every other message
links to it; then social, email, support). The channel modules, and the provider SDKs they
import, are loaded on first use of their names, not when this package is imported: importing
``crisiscomms.channels.base`` (as :mod:`crisiscomms.limits` does) stays light and free of
import cycles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crisiscomms.channels.base import (
    Channel,
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    RenderedMessage,
)

if TYPE_CHECKING:
    from crisiscomms.channels.press_release import PressReleaseChannel
    from crisiscomms.channels.retry import send_with_retry
    from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
    from crisiscomms.channels.status_page import StatusPageChannel
    from crisiscomms.channels.support_desk import SupportDeskChannel
    from crisiscomms.channels.x_social import XChannel

    CHANNEL_CLASSES: dict[str, type[Channel]]
    # Lets mypy check that every class satisfies the protocol (never executed).
    _CONFORMANCE: dict[str, type[Channel]] = {
        "status_page": StatusPageChannel,
        "x": XChannel,
        "email": SendGridEmailChannel,
        "press": PressReleaseChannel,
        "support": SupportDeskChannel,
    }

_LAZY = {
    "StatusPageChannel": "crisiscomms.channels.status_page",
    "XChannel": "crisiscomms.channels.x_social",
    "SendGridEmailChannel": "crisiscomms.channels.sendgrid_email",
    "SupportDeskChannel": "crisiscomms.channels.support_desk",
    "PressReleaseChannel": "crisiscomms.channels.press_release",
    "send_with_retry": "crisiscomms.channels.retry",
}

_REGISTRY_ORDER = (
    ("status_page", "StatusPageChannel"),
    ("x", "XChannel"),
    ("email", "SendGridEmailChannel"),
    ("press", "PressReleaseChannel"),
    ("support", "SupportDeskChannel"),
)

__all__ = [
    "CHANNEL_CLASSES",
    "Channel",
    "ChannelLimits",
    "DeliveryResult",
    "OutboundBatch",
    "OutboundRecipient",
    "Outcome",
    "PressReleaseChannel",
    "RenderedMessage",
    "SendGridEmailChannel",
    "StatusPageChannel",
    "SupportDeskChannel",
    "XChannel",
    "send_with_retry",
]


def __getattr__(name: str) -> Any:
    if name == "CHANNEL_CLASSES":
        registry: dict[str, type[Channel]] = {
            channel: __getattr__(class_name) for channel, class_name in _REGISTRY_ORDER
        }
        globals()["CHANNEL_CLASSES"] = registry
        return registry
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
