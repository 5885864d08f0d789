"""Channels: one module per provider, each a class behind :class:`~crisiscomms.delivery.
contract.Channel`, and their registry.

``CHANNEL_CLASSES`` lists them in publishing order (status page first: every other message
links to it; then social, email, support). The channel modules, and the provider SDKs they
import, are loaded on first use of the name, not when this package is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crisiscomms.delivery.contract import Channel

    CHANNEL_CLASSES: dict[str, type[Channel]]

_REGISTRY_ORDER = (
    ("status_page", "crisiscomms.channels.status_page", "StatusPageChannel"),
    ("x", "crisiscomms.channels.x_social", "XChannel"),
    ("email", "crisiscomms.channels.sendgrid_email", "SendGridEmailChannel"),
    ("press", "crisiscomms.channels.press_release", "PressReleaseChannel"),
    ("support", "crisiscomms.channels.support_desk", "SupportDeskChannel"),
)

__all__ = ["CHANNEL_CLASSES"]


def __getattr__(name: str) -> Any:
    if name == "CHANNEL_CLASSES":
        registry = {channel: getattr(importlib.import_module(module), cls)
                    for channel, module, cls in _REGISTRY_ORDER}
        globals()["CHANNEL_CLASSES"] = registry
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
