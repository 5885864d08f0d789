"""The channel registry: every channel class, in publication order, and what is built from it.

Each channel class declares what the engine needs to know about it (see
:class:`~crisiscomms.delivery.contract.Channel`): ``name``, ``order``, ``lane``, ``recipients``,
``personal``, ``default_enabled``, ``threaded``, ``rate_setting``, ``parts``, ``limits`` and a
``from_settings`` constructor. This module only says where the classes live; everything else
(the playbooks' default channels, the ledger's audiences, the flow's lanes, the dashboard's and
the CLI's columns) reads the classes through :func:`channel_classes`.

Importing this module imports no channel module and no provider SDK (tweepy, sendgrid): the
classes are loaded on the first call that needs them.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel, ChannelClasses, Lane

CHANNEL_MODULES: tuple[str, ...] = (
    "crisiscomms.channels.status_page:StatusPageChannel",
    "crisiscomms.channels.x_social:XChannel",
    "crisiscomms.channels.support_desk:SupportDeskChannel",
    "crisiscomms.channels.press_release:PressReleaseChannel",
    "crisiscomms.channels.sendgrid_email:SendGridEmailChannel",
    "crisiscomms.channels.mastodon_social:MastodonChannel",
    "crisiscomms.channels.bluesky:BlueskyChannel",
    "crisiscomms.channels.slack:SlackChannel",
    "crisiscomms.channels.teams:TeamsChannel",
    "crisiscomms.channels.webhook:WebhookChannel",
    "crisiscomms.channels.twilio_sms:TwilioSMSChannel",
)
"""``module:Class`` of every channel. The registry orders them by their declared ``order``,
not by their place here."""


@cache
def channel_classes() -> ChannelClasses:
    """Every channel class by name, in publication order (read-only)."""
    loaded: list[type[Channel]] = []
    for spec in CHANNEL_MODULES:
        module, _, attr = spec.partition(":")
        loaded.append(getattr(importlib.import_module(module), attr))
    loaded.sort(key=lambda cls: cls.order)
    for what, values in (("name", Counter(c.name for c in loaded)),
                         ("order", Counter(str(c.order) for c in loaded))):
        twice = sorted(v for v, n in values.items() if n > 1)
        if twice:
            raise RuntimeError(f"two channel classes declare the same {what}: {twice}")
    return MappingProxyType({cls.name: cls for cls in loaded})


def channel_names() -> tuple[str, ...]:
    """Every channel's name, in publication order."""
    return tuple(channel_classes())


def channel_class(name: str) -> type[Channel]:
    """The class of channel ``name``; a LookupError names the known ones."""
    classes = channel_classes()
    try:
        return classes[name]
    except KeyError:
        raise LookupError(f"unknown channel {name!r}; channels: {', '.join(classes)}") from None


def in_lane(lane: Lane) -> tuple[str, ...]:
    """The channels the flow schedules in ``lane``, in publication order."""
    return tuple(name for name, cls in channel_classes().items() if cls.lane is lane)


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel that has what it needs, in publication order; a channel whose
    ``from_settings`` answers None (no credentials) is left out."""
    built: dict[str, Channel] = {}
    for name, cls in channel_classes().items():
        channel = cls.from_settings(settings)
        if channel is not None:
            built[name] = channel
    return built


def rate_settings() -> Mapping[str, str]:
    """The ``Settings`` field of each channel whose request rate is configurable."""
    return {name: cls.rate_setting for name, cls in channel_classes().items()
            if cls.rate_setting is not None}


def configured_rates(settings: Settings) -> dict[str, float | None]:
    """Each configurable channel's requests per second from ``settings`` (None: no limit)."""
    rates: dict[str, float | None] = {}
    for name, field in rate_settings().items():
        value = getattr(settings, field)
        rates[name] = None if value is None else float(value)
    return rates
