"""Start the SendGrid and X emulators together (drills, the demo, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

from crisiscomms.testing.emulators.sendgrid import SendGridEmulator
from crisiscomms.testing.emulators.x_api import XEmulator


@dataclass
class EmulatorPair:
    """Both emulators, running; stop them with `stop()` or a ``with`` block."""

    sendgrid: SendGridEmulator
    x: XEmulator

    def stop(self) -> None:
        try:
            self.sendgrid.stop()
        finally:
            self.x.stop()

    def reset(self) -> None:
        self.sendgrid.reset()
        self.x.reset()

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
) -> EmulatorPair:
    """Start both emulators (port 0: a free port each) and return them running; with
    ``event_webhook_url`` the SendGrid emulator POSTs signed events of what it accepts there
    (the listening app's ``/v1/sendgrid/events``)."""
    sendgrid = SendGridEmulator(sendgrid_key, host=host, port=sendgrid_port,
                                event_webhook_url=event_webhook_url).start()
    try:
        x = XEmulator(x_token, consumer_key=x_consumer_key, host=host, port=x_port).start()
    except BaseException:
        sendgrid.stop()
        raise
    return EmulatorPair(sendgrid=sendgrid, x=x)
