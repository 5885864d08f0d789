"""Start the provider emulators together (drills, the demo, tests): SendGrid, X and Twilio,
and with them the channels of issue 15 (Mastodon, Bluesky, Slack, Teams, a Standard Webhooks
receiver), each with credentials of its own made up for the run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from crisiscomms.intake.signatures import new_secret
from crisiscomms.testing.emulators.bluesky import BlueskyEmulator
from crisiscomms.testing.emulators.chat import SlackEmulator, TeamsEmulator
from crisiscomms.testing.emulators.mastodon import MastodonEmulator
from crisiscomms.testing.emulators.sendgrid import SendGridEmulator
from crisiscomms.testing.emulators.server import EmulatorServer
from crisiscomms.testing.emulators.twilio import TwilioEmulator
from crisiscomms.testing.emulators.webhook_receiver import WebhookReceiver
from crisiscomms.testing.emulators.x_api import XEmulator

DRILL_TWILIO_SID = "AC" + "d7111" * 6 + "00"
"""The emulated Twilio account of drills and tests (an ``AC`` + 32 characters SID)."""
DRILL_SMS_FROM = "+15005550006"
"""The sender of drill SMS: Twilio's own test number, never a real person's."""


@dataclass
class MoreChannels:
    """The emulators of the channels for our own people and the fediverse, running."""

    mastodon: MastodonEmulator
    bluesky: BlueskyEmulator
    slack: SlackEmulator
    teams: TeamsEmulator
    webhook: WebhookReceiver

    def all(self) -> list[EmulatorServer]:
        return [self.mastodon, self.bluesky, self.slack, self.teams, self.webhook]

    def environment(self) -> dict[str, str]:
        """The ``CRISISCOMMS_*`` settings that point every channel at its emulator."""
        return {
            "CRISISCOMMS_MASTODON_ACCESS_TOKEN": self.mastodon.token,
            "CRISISCOMMS_MASTODON_BASE_URL": self.mastodon.url,
            "CRISISCOMMS_BLUESKY_HANDLE": self.bluesky.account_handle,
            "CRISISCOMMS_BLUESKY_APP_PASSWORD": self.bluesky.password,
            "CRISISCOMMS_BLUESKY_BASE_URL": self.bluesky.url,
            # a post's image (a recall's photo) is fetched from the emulator, not the world
            "CRISISCOMMS_MEDIA_PROXY_URL": f"{self.mastodon.url}/_emulator/media",
            "CRISISCOMMS_SLACK_WEBHOOK_URL": self.slack.webhook_url,
            # the Web API wins when a bot token is set: drills see threads updated in place
            "CRISISCOMMS_SLACK_BOT_TOKEN": self.slack.bot_token,
            "CRISISCOMMS_SLACK_CHANNEL": self.slack.channel_id,
            "CRISISCOMMS_SLACK_BASE_URL": self.slack.api_url,
            "CRISISCOMMS_TEAMS_WEBHOOK_URL": self.teams.webhook_url,
            "CRISISCOMMS_WEBHOOK_URL": self.webhook.hook_url,
            "CRISISCOMMS_WEBHOOK_SECRET": self.webhook.secret,
        }


def start_more_channels(host: str = "127.0.0.1") -> MoreChannels:
    """Start the five emulators on free ports, with fresh credentials."""
    started: list[EmulatorServer] = []
    try:
        mastodon = MastodonEmulator(f"mastodon-{secrets.token_urlsafe(24)}", host=host).start()
        started.append(mastodon)
        bluesky = BlueskyEmulator("status.example.com",
                                  "-".join(secrets.token_hex(2) for _ in range(4)),
                                  host=host).start()
        started.append(bluesky)
        slack = SlackEmulator(host=host).start()
        started.append(slack)
        teams = TeamsEmulator(host=host).start()
        started.append(teams)
        webhook = WebhookReceiver(new_secret(), host=host).start()
        started.append(webhook)
    except BaseException:
        for emulator in started:
            emulator.stop()
        raise
    return MoreChannels(mastodon, bluesky, slack, teams, webhook)


@dataclass
class EmulatorPair:
    """The emulators, running; stop them with `stop()` or a ``with`` block. ``more`` holds the
    issue 15 channels' emulators (None when started without them)."""

    sendgrid: SendGridEmulator
    x: XEmulator
    twilio: TwilioEmulator
    more: MoreChannels | None = field(default=None)

    def all(self) -> list[EmulatorServer]:
        return [self.sendgrid, self.x, self.twilio, *(self.more.all() if self.more else [])]

    def stop(self) -> None:
        errors: list[BaseException] = []
        for emulator in self.all():
            try:
                emulator.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]

    def reset(self) -> None:
        for emulator in self.all():
            emulator.reset()
        self.twilio.opted_out.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_emulators(
    *,
    sendgrid_key: str,
    x_token: str,
    x_consumer_key: str | None = None,
    host: str = "127.0.0.1",
    sendgrid_port: int = 0,
    x_port: int = 0,
    event_webhook_url: str | None = None,
    twilio_auth_token: str | None = None,
    twilio_port: int = 0,
    more_channels: bool = True,
) -> EmulatorPair:
    """Start the emulators (port 0: a free port each) and return them running; with
    ``event_webhook_url`` the SendGrid emulator POSTs signed events of what it accepts there
    (the listening app's ``/v1/sendgrid/events``). The Twilio emulator's account is
    :data:`DRILL_TWILIO_SID`, its auth token ``twilio_auth_token`` (default: a random one).
    ``more_channels``: also Mastodon, Bluesky, Slack, Teams and the webhook receiver."""
    sendgrid = SendGridEmulator(sendgrid_key, host=host, port=sendgrid_port,
                                event_webhook_url=event_webhook_url).start()
    try:
        x = XEmulator(x_token, consumer_key=x_consumer_key, host=host, port=x_port).start()
    except BaseException:
        sendgrid.stop()
        raise
    try:
        twilio = TwilioEmulator(DRILL_TWILIO_SID, twilio_auth_token or secrets.token_hex(16),
                                host=host, port=twilio_port).start()
    except BaseException:
        sendgrid.stop()
        x.stop()
        raise
    try:
        more = start_more_channels(host) if more_channels else None
    except BaseException:
        sendgrid.stop()
        x.stop()
        twilio.stop()
        raise
    return EmulatorPair(sendgrid=sendgrid, x=x, twilio=twilio, more=more)
