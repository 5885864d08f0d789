"""Channels: one module per provider, each a class behind :class:`~crisiscomms.delivery.
contract.Channel` that declares its order, lane, audience, limits and ``from_settings``; the
registry (:mod:`crisiscomms.channels.registry`) lists them.

``CHANNEL_CLASSES`` is the registry's mapping (publication order). The channel modules, and the
provider SDKs they import, are loaded on first use of the name, not when this package is
imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crisiscomms.delivery.contract import ChannelClasses

    CHANNEL_CLASSES: ChannelClasses

__all__ = ["CHANNEL_CLASSES"]


def __getattr__(name: str) -> Any:
    if name == "CHANNEL_CLASSES":
        from crisiscomms.channels.registry import channel_classes

        return channel_classes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
