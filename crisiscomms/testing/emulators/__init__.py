"""Local HTTP servers that behave like SendGrid v3 mail send, X API v2 post creation, Twilio's
Messages resource, Mastodon, a Bluesky PDS, Slack and Teams incoming webhooks and a Standard
Webhooks receiver.

Standard library only; used by drills, the demo, tests and benchmarks::

    with start_emulators(sendgrid_key="SG.test", x_token="x-test") as emulators:
        SendGridAPIClient("SG.test", host=emulators.sendgrid.url)
        ...
        emulators.sendgrid.stats()
"""

from crisiscomms.testing.emulators.bluesky import BlueskyEmulator
from crisiscomms.testing.emulators.chat import SlackEmulator, TeamsEmulator
from crisiscomms.testing.emulators.faults import Faults
from crisiscomms.testing.emulators.mastodon import MastodonEmulator
from crisiscomms.testing.emulators.pair import (
    EmulatorPair,
    MoreChannels,
    start_emulators,
    start_more_channels,
)
from crisiscomms.testing.emulators.sendgrid import SendGridEmulator
from crisiscomms.testing.emulators.server import EmulatorServer
from crisiscomms.testing.emulators.twilio import TwilioEmulator
from crisiscomms.testing.emulators.webhook_receiver import WebhookReceiver
from crisiscomms.testing.emulators.x_api import XEmulator

__all__ = [
    "BlueskyEmulator",
    "EmulatorPair",
    "EmulatorServer",
    "Faults",
    "MastodonEmulator",
    "MoreChannels",
    "SendGridEmulator",
    "SlackEmulator",
    "TeamsEmulator",
    "TwilioEmulator",
    "WebhookReceiver",
    "XEmulator",
    "start_emulators",
    "start_more_channels",
]
