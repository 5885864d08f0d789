"""Local HTTP servers that behave like SendGrid v3 mail send, X API v2 post creation and
Twilio's Messages resource.

Standard library only; used by drills, the demo, tests and benchmarks::

    with start_emulators(sendgrid_key="SG.test", x_token="x-test") as emulators:
        SendGridAPIClient("SG.test", host=emulators.sendgrid.url)
        ...
        emulators.sendgrid.stats()
"""

from crisiscomms.testing.emulators.faults import Faults
from crisiscomms.testing.emulators.pair import EmulatorPair, start_emulators
from crisiscomms.testing.emulators.sendgrid import SendGridEmulator
from crisiscomms.testing.emulators.server import EmulatorServer
from crisiscomms.testing.emulators.twilio import TwilioEmulator
from crisiscomms.testing.emulators.x_api import XEmulator

__all__ = [
    "EmulatorPair",
    "EmulatorServer",
    "Faults",
    "SendGridEmulator",
    "TwilioEmulator",
    "XEmulator",
    "start_emulators",
]
