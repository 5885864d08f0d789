"""Start the SendGrid, X and Twilio emulators together (drills, the demo, tests)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from crisiscomms.testing.emulators.sendgrid import SendGridEmulator
from crisiscomms.testing.emulators.twilio import TwilioEmulator
from crisiscomms.testing.emulators.x_api import XEmulator

DRILL_TWILIO_SID = "AC" + "d7111" * 6 + "00"
"""The emulated Twilio account of drills and tests (an ``AC`` + 32 characters SID)."""
DRILL_SMS_FROM = "+15005550006"
"""The sender of drill SMS: Twilio's own test number, never a real person's."""


@dataclass
class EmulatorPair:
    """Both emulators, running; stop them with `stop()` or a ``with`` block."""

    sendgrid: SendGridEmulator
    x: XEmulator
    twilio: TwilioEmulator

    def stop(self) -> None:
        try:
            self.sendgrid.stop()
        finally:
            try:
                self.x.stop()
            finally:
                self.twilio.stop()

    def reset(self) -> None:
        self.sendgrid.reset()
        self.x.reset()
        self.twilio.reset()
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
) -> EmulatorPair:
    """Start both emulators (port 0: a free port each) and return them running; with
    ``event_webhook_url`` the SendGrid emulator POSTs signed events of what it accepts there
    (the listening app's ``/v1/sendgrid/events``). The Twilio emulator's account is
    :data:`DRILL_TWILIO_SID`, its auth token ``twilio_auth_token`` (default: a random one)."""
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
    return EmulatorPair(sendgrid=sendgrid, x=x, twilio=twilio)
