"""Quiet hours in each recipient's own time zone, and the sender's deferral of an SMS that can
wait (a stage that is not urgent), with the time it may go."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from crisiscomms.audience.quiet_hours import QuietHours
from crisiscomms.channels.twilio_sms import TwilioSMSChannel
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import OutboundRecipient, Outcome
from crisiscomms.delivery.sender import quiet_until

NIGHT = QuietHours.parse("21:00-08:00")


def test_parse_and_contains_across_midnight() -> None:
    assert (NIGHT.start, NIGHT.end, str(NIGHT)) == (time(21), time(8), "21:00-08:00")
    assert NIGHT.contains(time(23, 30)) and NIGHT.contains(time(0, 0))
    assert NIGHT.contains(time(7, 59)) and not NIGHT.contains(time(8, 0))
    assert not NIGHT.contains(time(12)) and NIGHT.contains(time(21))
    siesta = QuietHours.parse("13:00-15:00")
    assert siesta.contains(time(14)) and not siesta.contains(time(15))


@pytest.mark.parametrize("text", ["", "21:00", "21-08", "25:00-08:00", "21:00-21:00",
                                  "9:0-8:00"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        QuietHours.parse(text)


def test_ends_after_is_the_local_morning_in_utc() -> None:
    at = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # 08:30 in Tokyo, 18:30 in New York
    assert NIGHT.ends_after(at, "Asia/Tokyo") is None
    assert NIGHT.ends_after(at, "America/New_York") is None
    # 00:30 in Berlin: quiet until 08:00 Berlin, 07:00 UTC the same day
    assert NIGHT.ends_after(at, "Europe/Berlin") == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    # 22:00 in Berlin: the window ends tomorrow morning
    evening = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    assert NIGHT.ends_after(evening, "Europe/Berlin") == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    # an unknown zone counts as UTC: 23:30 UTC is quiet until 08:00 UTC
    assert NIGHT.ends_after(at, "Mars/Olympus") == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_ends_after_follows_daylight_saving() -> None:
    # the night the clocks go forward in Berlin (29 March 2026): 08:00 is CEST, 06:00 UTC
    at = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert NIGHT.ends_after(at, "Europe/Berlin") == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def channel() -> TwilioSMSChannel:
    return TwilioSMSChannel("AC" + "2" * 32, "token", sender="+15005550006",
                            base_url="http://127.0.0.1:9", quiet_hours="21:00-08:00")


def test_a_stage_that_can_wait_is_deferred_to_the_latest_end_of_its_recipients() -> None:
    now = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    berlin = OutboundRecipient(1, "+15550000001", time_zone="Europe/Berlin")
    york = OutboundRecipient(2, "+15550000002", time_zone="America/New_York")
    tokyo = OutboundRecipient(3, "+15550000003", time_zone="Asia/Tokyo")
    result = quiet_until(channel(), [berlin], urgent=False, now=now)
    assert result is not None and result.outcome is Outcome.deferred
    assert result.not_before == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert result.reason == ("quiet hours 21:00-08:00 where recipient 1 lives (Europe/Berlin): "
                             "deferred until 2026-12-02 07:00 UTC")
    assert quiet_until(channel(), [york, tokyo], urgent=False, now=now) is None
    assert quiet_until(channel(), [berlin], urgent=True, now=now) is None  # urgent: at once


def test_without_quiet_hours_nothing_waits() -> None:
    now = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    plain = TwilioSMSChannel("AC" + "2" * 32, "token", sender="+15005550006",
                             base_url="http://127.0.0.1:9", quiet_hours=None)
    berlin = OutboundRecipient(1, "+15550000001", time_zone="Europe/Berlin")
    assert quiet_until(plain, [berlin], urgent=False, now=now) is None


@pytest.mark.parametrize(("given", "error"), [
    ("bad", "is not HH:MM-HH:MM"), ("24:00-08:00", "is not HH:MM-HH:MM"),
    ("08:00-08:00", "starts and ends at the same time")])
def test_the_setting_is_checked_when_settings_load(given: str, error: str,
                                                   tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=error):
        Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                 sms_quiet_hours=given)
    none = Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                    sms_quiet_hours="")
    assert none.sms_quiet_hours is None
