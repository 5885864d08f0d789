"""Build the configured channel adapters from Settings (the adapters never read the environment)."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

from crisiscomms.channels.press_release import PressReleaseChannel
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.channels.status_page import StatusPageChannel
from crisiscomms.channels.support_desk import SupportDeskChannel
from crisiscomms.channels.x_social import XChannel
from crisiscomms.core.errors import PlaybookError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel
from crisiscomms.playbook.loader import available_playbooks, load_playbook
from crisiscomms.statuspage.page import StatusPage


@lru_cache(maxsize=8)
def _default_locale(playbooks_dir: Path, stamp: float) -> str | None:
    """The ``default_locale`` the playbooks share (the most common one; ties: alphabetical)."""
    counts: Counter[str] = Counter()
    for name in available_playbooks(playbooks_dir):
        try:
            counts[load_playbook(name, playbooks_dir).default_locale] += 1
        except PlaybookError:
            continue
    if not counts:
        return None
    return min(counts, key=lambda loc: (-counts[loc], loc))


def status_page_default_locale(settings: Settings) -> str | None:
    """The locale of the status page's root (``index.html``, ``api/v2``): the playbooks'
    ``default_locale``; every other locale is published under ``<locale>/``."""
    folder = settings.playbooks_dir
    try:
        stamp = folder.stat().st_mtime
    except OSError:
        return None
    return _default_locale(folder, stamp)


def _subscribe_url(settings: Settings) -> str | None:
    if not settings.subscriptions_url:
        return None
    return f"{settings.subscriptions_url.rstrip('/')}/v1/subscribe"


def unsubscribe_url(settings: Settings) -> str | None:
    """The prefix of every subscriber's unsubscribe link (``<subscriptions_url>/v1/
    unsubscribe/``, followed by their token); None without a subscriptions app."""
    if not settings.subscriptions_url:
        return None
    return f"{settings.subscriptions_url.rstrip('/')}/v1/unsubscribe/"


def build_status_page(settings: Settings) -> StatusPage:
    """The status page directory as the CLI (``maintenance schedule``, ``statuspage build``)
    and the channel see it: same name, URL, default locale and subscribe form."""
    return StatusPage(settings.resolved_status_page_dir,
                      page_name=f"{settings.organization} Status",
                      page_url=settings.status_page_url,
                      default_locale=status_page_default_locale(settings),
                      subscribe_url=_subscribe_url(settings))


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel that has what it needs; a channel without credentials is left out."""
    channels: dict[str, Channel] = {
        "status_page": StatusPageChannel(
            settings.resolved_status_page_dir,
            page_name=f"{settings.organization} Status",
            page_url=settings.status_page_url,
            default_locale=status_page_default_locale(settings),
            subscribe_url=_subscribe_url(settings),
        ),
        "support": SupportDeskChannel(settings.data_dir / "support"),
    }
    if settings.x_bearer_token is not None or settings.x_consumer_key is not None:
        channels["x"] = XChannel(
            bearer_token=settings.x_bearer_token,
            consumer_key=settings.x_consumer_key,
            consumer_secret=settings.x_consumer_secret,
            access_token=settings.x_access_token,
            access_token_secret=settings.x_access_token_secret,
            base_url=settings.x_base_url,
            timeout_s=settings.http_timeout_s,
        )
    if settings.sendgrid_api_key is not None:
        channels["email"] = SendGridEmailChannel(
            settings.sendgrid_api_key,
            base_url=settings.sendgrid_base_url,
            from_email=settings.email_from,
            from_name=settings.email_from_name,
            timeout_s=settings.http_timeout_s,
            unsubscribe_url=unsubscribe_url(settings),
            transport=settings.sendgrid_transport,
        )
        channels["press"] = PressReleaseChannel(
            settings.sendgrid_api_key,
            base_url=settings.sendgrid_base_url,
            from_email=settings.email_from,
            from_name=settings.email_from_name,
            timeout_s=settings.http_timeout_s,
            transport=settings.sendgrid_transport,
        )
    return channels
