"""Build the configured channel adapters from Settings (the adapters never read the environment)."""

from __future__ import annotations

from crisiscomms.channels.base import Channel
from crisiscomms.channels.press_release import PressReleaseChannel
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.channels.status_page import StatusPageChannel
from crisiscomms.channels.support_desk import SupportDeskChannel
from crisiscomms.channels.x_social import XChannel
from crisiscomms.config import Settings


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel that has what it needs; a channel without credentials is left out."""
    channels: dict[str, Channel] = {
        "status_page": StatusPageChannel(
            settings.resolved_status_page_dir,
            page_name=f"{settings.organization} Status",
            page_url=settings.status_page_url,
            subscribe_url=(f"{settings.subscriptions_url.rstrip('/')}/v1/subscribe"
                           if settings.subscriptions_url else None),
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
