"""The channel adapters against real servers on loopback: the SendGrid and X emulators, and the
file system for the status page and the support desk."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.channels.status_page import StatusPageChannel
from crisiscomms.channels.support_desk import SupportDeskChannel
from crisiscomms.channels.x_social import XChannel
from crisiscomms.delivery.contract import (
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    RenderedMessage,
)
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.render.environment import recipient_substitutions
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.statuspage.publish import Content
from crisiscomms.testing.emulators import EmulatorPair, Faults, start_emulators

pytestmark = pytest.mark.integration

SG_KEY = "SG.channels-test-key-0123456789"
X_TOKEN = "x-channels-test-bearer-0123456789"
X_CONSUMER_KEY = "x-channels-consumer-key"


def facts(**over: object) -> FactSheet:
    data: dict[str, object] = {
        "incident_ref": "INC-2026-001",
        "organization": "Example Corp",
        "title": "Checkout errors",
        "severity": "major",
        "components": ["Checkout", "Payments API"],
        "started_at": "2026-11-23T09:40:00+00:00",
    }
    data.update(over)
    return build_fact_sheet(data)


def batch(
    channel: str,
    parts: dict[str, str],
    *,
    key: str,
    status: str = "investigating",
    stage: str = "acknowledge",
    locale: str = "en",
    recipients: list[OutboundRecipient] | None = None,
    reply_to: str | None = None,
    fact_sheet: FactSheet | None = None,
) -> OutboundBatch:
    message = RenderedMessage(playbook="outage", stage=stage, channel=channel, locale=locale,
                              parts=parts, content_hash="0" * 64)
    return OutboundBatch(key=key, batch_no=0, facts=fact_sheet or facts(),
                         incident_status=status, message=message,
                         recipients=recipients or [], reply_to=reply_to)


@pytest.fixture(scope="module")
def emus() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SG_KEY, x_token=X_TOKEN,
                         x_consumer_key=X_CONSUMER_KEY) as pair:
        yield pair


@pytest.fixture
def emu(emus: EmulatorPair) -> EmulatorPair:
    emus.reset()
    return emus


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


# ---- email ------------------------------------------------------------------------------------

EMAIL_PARTS = {
    "subject": "Checkout errors at Example Corp",
    "text": "Hi %first_name%,\nCheckout is failing. We are on it.",
    "html": "<p>Hi %first_name.html%,</p><p>Checkout is failing.</p>",
}


def email(emu: EmulatorPair, *, key: str = SG_KEY, url: str | None = None,
          timeout_s: float = 5.0) -> SendGridEmailChannel:
    return SendGridEmailChannel(key, base_url=url or emu.sendgrid.url,
                                from_email="status@example.com", from_name="Example Status",
                                timeout_s=timeout_s)


def recipients(n: int) -> list[OutboundRecipient]:
    out = [OutboundRecipient(0, "zoe@example.com", recipient_substitutions({"first_name":
                                                                            "<b>Zoë</b>"}))]
    out += [OutboundRecipient(i, f"user{i:04d}@example.com",
                              recipient_substitutions({"first_name": f"Name{i}"}))
            for i in range(1, n)]
    return out


def test_email_batch_of_1000(emu: EmulatorPair) -> None:
    result = email(emu).send(batch("email", EMAIL_PARTS, key="k-mail-1000",
                                   recipients=recipients(1000)))
    assert result.outcome is Outcome.sent, result.reason
    assert result.provider_id
    received = emu.sendgrid.received("k-mail-1000")
    assert len(received) == 1000
    assert emu.sendgrid.stats()["requests"] == 1
    zoe = next(r for r in received if r["to"] == "zoe@example.com")
    assert zoe["text"].startswith("Hi <b>Zoë</b>,")
    assert "<p>Hi &lt;b&gt;Zoë&lt;/b&gt;,</p>" in zoe["html"]
    other = next(r for r in received if r["to"] == "user0042@example.com")
    assert "Hi Name42," in other["text"] and "%first_name" not in other["text"] + other["html"]
    assert zoe["subject"] == EMAIL_PARTS["subject"]


def test_email_bad_key_is_permanent_without_the_secret(
    emu: EmulatorPair, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "SG.wrong-key-that-must-not-leak"
    caplog.set_level(logging.DEBUG)
    result = email(emu, key=wrong).send(batch("email", EMAIL_PARTS, key="k-bad",
                                             recipients=recipients(2)))
    assert result.outcome is Outcome.permanent
    assert result.reason is not None and "401" in result.reason
    assert "invalid" in result.reason
    for secret in (wrong, SG_KEY):
        assert secret not in result.reason and secret not in caplog.text
    assert emu.sendgrid.received("k-bad") == []


def test_email_provider_validation_error_names_the_field(emu: EmulatorPair) -> None:
    bad = [OutboundRecipient(1, "not-an-address")]
    result = email(emu).send(batch("email", EMAIL_PARTS, key="k-400", recipients=bad))
    assert result.outcome is Outcome.permanent
    assert result.reason is not None and "400" in result.reason and "field" in result.reason


def test_email_rate_limited_is_retryable_with_retry_after(emu: EmulatorPair) -> None:
    emu.sendgrid.set_faults(Faults(rate_limit=0, rate_window_s=5))
    result = email(emu).send(batch("email", EMAIL_PARTS, key="k-429", recipients=recipients(3)))
    assert result.outcome is Outcome.retryable
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= 6


def test_email_server_error_is_retryable(emu: EmulatorPair) -> None:
    emu.sendgrid.set_faults(Faults(error_rate=1.0, error_statuses=(503,)))
    result = email(emu).send(batch("email", EMAIL_PARTS, key="k-503", recipients=recipients(3)))
    assert result.outcome is Outcome.retryable and "503" in (result.reason or "")


def test_email_connection_reset_is_retryable(emu: EmulatorPair) -> None:
    emu.sendgrid.set_faults(Faults(reset_rate=1.0))
    result = email(emu).send(batch("email", EMAIL_PARTS, key="k-reset", recipients=recipients(2)))
    assert result.outcome is Outcome.retryable


def test_email_unreachable_is_retryable_quickly(emu: EmulatorPair) -> None:
    start = time.monotonic()
    result = email(emu, url=closed_port_url()).send(
        batch("email", EMAIL_PARTS, key="k-closed", recipients=recipients(2)))
    assert result.outcome is Outcome.retryable
    assert time.monotonic() - start < 2


def test_email_hanging_server_times_out(emu: EmulatorPair) -> None:
    emu.sendgrid.set_faults(Faults(timeout_rate=1.0, hang_s=5))
    start = time.monotonic()
    result = email(emu, timeout_s=0.5).send(
        batch("email", EMAIL_PARTS, key="k-hang", recipients=recipients(2)))
    assert result.outcome is Outcome.retryable, result
    assert time.monotonic() - start < 2.5


def test_email_is_safe_from_several_threads(emu: EmulatorPair) -> None:
    channel = email(emu)
    results = {}

    def send(n: int) -> None:
        results[n] = channel.send(batch("email", EMAIL_PARTS, key=f"k-thread-{n}",
                                        recipients=recipients(50)))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.outcome is Outcome.sent for r in results.values())
    assert all(len(emu.sendgrid.received(f"k-thread-{n}")) == 50 for n in range(8))


# ---- X ----------------------------------------------------------------------------------------


def x(emu: EmulatorPair, **kwargs: object) -> XChannel:
    options: dict[str, object] = {"bearer_token": X_TOKEN, "base_url": emu.x.url,
                                  "timeout_s": 5.0}
    options.update(kwargs)
    return XChannel(**options)  # type: ignore[arg-type]


def test_x_post_duplicate_and_thread(emu: EmulatorPair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    channel = x(emu)
    first = channel.send(batch("x", {"text": "We are investigating checkout errors."}, key="x1"))
    assert first.outcome is Outcome.sent and first.provider_id
    again = channel.send(batch("x", {"text": "We are investigating checkout errors."}, key="x2"))
    assert again.outcome is Outcome.permanent and "duplicate content" in (again.reason or "")
    reply = channel.send(batch("x", {"text": "Update: a fix is rolling out."}, key="x3",
                               reply_to=first.provider_id))
    assert reply.outcome is Outcome.sent
    (record,) = emu.x.received(reply.provider_id)
    assert record["reply_to"] == first.provider_id
    assert channel.recent_posts(10) == [
        (reply.provider_id, "Update: a fix is rolling out."),
        (first.provider_id, "We are investigating checkout errors."),
    ]
    assert X_TOKEN not in caplog.text


def test_x_oauth1_user_context(emu: EmulatorPair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = {"consumer_key": X_CONSUMER_KEY, "consumer_secret": "cs-secret-value",
               "access_token": "at-value-1234", "access_token_secret": "ats-secret-value"}
    channel = x(emu, bearer_token=None, **secrets)
    result = channel.send(batch("x", {"text": "Posted with OAuth 1.0a."}, key="x-oauth"))
    assert result.outcome is Outcome.sent, result.reason
    for value in secrets.values():
        assert value not in caplog.text


def test_x_bad_token_is_permanent(emu: EmulatorPair) -> None:
    result = x(emu, bearer_token="wrong-token-value").send(
        batch("x", {"text": "Nope."}, key="x-401"))
    assert result.outcome is Outcome.permanent and "401" in (result.reason or "")
    assert "wrong-token-value" not in (result.reason or "")


def test_x_rate_limited_is_retryable_with_retry_after(emu: EmulatorPair) -> None:
    emu.x.set_faults(Faults(rate_limit=0, rate_window_s=5))
    result = x(emu).send(batch("x", {"text": "Rate limited."}, key="x-429"))
    assert result.outcome is Outcome.retryable
    assert result.retry_after_s is not None and 0 <= result.retry_after_s <= 6


def test_x_server_error_and_hang_are_retryable(emu: EmulatorPair) -> None:
    emu.x.set_faults(Faults(error_rate=1.0, error_statuses=(500,)))
    assert x(emu).send(batch("x", {"text": "500"}, key="x-500")).outcome is Outcome.retryable
    emu.x.set_faults(Faults(timeout_rate=1.0, hang_s=5))
    start = time.monotonic()
    result = x(emu, timeout_s=0.5).send(batch("x", {"text": "hang"}, key="x-hang"))
    assert result.outcome is Outcome.retryable
    assert time.monotonic() - start < 2.5


def test_x_unreachable_is_retryable(emu: EmulatorPair) -> None:
    result = x(emu, base_url=closed_port_url()).send(batch("x", {"text": "t"}, key="x-closed"))
    assert result.outcome is Outcome.retryable


def test_x_over_limit_is_caught_by_validate(emu: EmulatorPair) -> None:
    message = batch("x", {"text": "é" * 281}, key="x-long").message
    problems = x(emu).validate(message)
    assert problems and "281" in problems[0]
    assert emu.x.stats()["requests"] == 0


# ---- status page ------------------------------------------------------------------------------


def page(tmp_path: Path) -> StatusPageChannel:
    return StatusPageChannel(tmp_path / "status", page_name="Example Corp Status",
                             page_url="https://status.example.com")


def read(channel: StatusPageChannel, relative: str) -> str:
    return (channel.site_path / relative).read_text(encoding="utf-8")


def test_status_page_publishes_idempotently(tmp_path: Path) -> None:
    channel = page(tmp_path)
    first = channel.send(batch("status_page", {"text": "We are investigating."}, key="sp-1"))
    again = channel.send(batch("status_page", {"text": "We are investigating."}, key="sp-1"))
    assert first.outcome is Outcome.sent and again == first
    assert channel.accepted("sp-1") and not channel.accepted("sp-2")
    incidents = json.loads(read(channel, "api/v2/incidents.json"))["incidents"]
    assert len(incidents) == 1 and len(incidents[0]["incident_updates"]) == 1
    assert incidents[0]["incident_updates"][0]["id"] == first.provider_id


def test_status_page_json_follows_statuspage(tmp_path: Path) -> None:
    channel = page(tmp_path)
    assert channel.send(batch("status_page", {"text": "Investigating."}, key="a")).outcome == "sent"
    assert channel.send(batch("status_page", {"text": "Fix deployed."}, key="b",
                              status="monitoring", stage="update")).outcome == "sent"
    summary = json.loads(read(channel, "api/v2/summary.json"))
    assert set(summary) == {"page", "status", "components", "incidents", "scheduled_maintenances"}
    assert set(summary["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    assert summary["status"] == {"indicator": "major", "description": "Partial System Outage"}
    components = json.loads(read(channel, "api/v2/components.json"))["components"]
    assert [c["name"] for c in components] == ["Checkout", "Payments API"]
    assert {c["status"] for c in components} == {"partial_outage"}
    assert [c["position"] for c in components] == [1, 2]
    (incident,) = json.loads(read(channel, "api/v2/incidents/unresolved.json"))["incidents"]
    for field in ("id", "name", "status", "created_at", "updated_at", "monitoring_at",
                  "resolved_at", "impact", "shortlink", "started_at", "page_id",
                  "incident_updates", "components"):
        assert field in incident
    assert incident["status"] == "monitoring" and incident["impact"] == "major"
    assert incident["monitoring_at"] is not None and incident["resolved_at"] is None
    updates = incident["incident_updates"]
    assert [u["status"] for u in updates] == ["monitoring", "investigating"]  # newest first
    assert set(updates[0]) >= {"id", "status", "body", "incident_id", "created_at",
                               "updated_at", "display_at", "affected_components"}
    assert updates[0]["created_at"].endswith("+00:00")
    status = json.loads(read(channel, "api/v2/status.json"))
    assert status["status"]["indicator"] == "major"

    resolved = channel.send(batch("status_page", {"text": "Resolved."}, key="c",
                                  status="resolved", stage="resolve"))
    assert resolved.outcome is Outcome.sent
    assert json.loads(read(channel, "api/v2/incidents/unresolved.json"))["incidents"] == []
    assert json.loads(read(channel, "api/v2/status.json"))["status"]["indicator"] == "none"
    (incident,) = json.loads(read(channel, "api/v2/incidents.json"))["incidents"]
    assert incident["status"] == "resolved" and incident["resolved_at"] is not None
    components = json.loads(read(channel, "api/v2/components.json"))["components"]
    assert {c["status"] for c in components} == {"operational"}
    html = read(channel, "index.html")
    assert html.index("Past incidents") < html.index('href="incidents/INC-2026-001.html"')
    assert "Resolved." in read(channel, "incidents/INC-2026-001.html")


def test_status_page_escapes_bodies(tmp_path: Path) -> None:
    channel = page(tmp_path)
    body = "<script>alert(1)</script> & more"
    fact_sheet = facts(title="<img src=x onerror=alert(2)>")
    assert channel.send(batch("status_page", {"text": body}, key="xss",
                              fact_sheet=fact_sheet)).outcome is Outcome.sent
    html = read(channel, "index.html")
    assert "<script>alert" not in html and "<img" not in html  # our own script has no alert
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert json.loads(read(channel, "api/v2/incidents.json"))["incidents"][0][
        "incident_updates"][0]["body"] == body


class FullDiskPage(StatusPage):
    """The real status page, with the disk filling up while the site is generated."""

    def build(self, state: dict[str, Any]) -> dict[str, Content]:
        raise OSError(28, "No space left on device")


class FailingBuild(StatusPageChannel):
    """The real channel on that page."""

    def __init__(self, output_dir: Path, *, page_name: str, page_url: str) -> None:
        super().__init__(output_dir, page_name=page_name, page_url=page_url)
        self.page = FullDiskPage(output_dir, page_name=page_name, page_url=page_url)


def test_status_page_failed_build_keeps_the_previous_site(tmp_path: Path) -> None:
    channel = page(tmp_path)
    assert channel.send(batch("status_page", {"text": "First update."}, key="p1")).outcome == "sent"
    before = read(channel, "index.html")
    failing = FailingBuild(channel.output_dir, page_name=channel.page_name,
                           page_url=channel.page_url)
    result = failing.send(batch("status_page", {"text": "Second update."}, key="p2"))
    assert result.outcome is Outcome.retryable and "ENOSPC" in (result.reason or "")
    assert read(channel, "index.html") == before
    assert [p.name for p in (channel.output_dir / "builds").iterdir()
            if p.name.startswith(".tmp")] == []
    # Nothing was committed (the site is built first); the retry publishes the update once.
    retried = channel.send(batch("status_page", {"text": "Second update."}, key="p2"))
    assert retried.outcome is Outcome.sent
    updates = json.loads(read(channel, "api/v2/incidents.json"))["incidents"][0][
        "incident_updates"]
    assert [u["body"] for u in updates] == ["Second update.", "First update."]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_status_page_unwritable_dir_is_retryable(tmp_path: Path) -> None:
    channel = page(tmp_path)
    assert channel.send(batch("status_page", {"text": "One."}, key="w1")).outcome == "sent"
    before = read(channel, "index.html")
    builds = channel.output_dir / "builds"
    builds.chmod(0o555)
    try:
        result = channel.send(batch("status_page", {"text": "Two."}, key="w2"))
    finally:
        builds.chmod(0o755)
    assert result.outcome is Outcome.retryable
    assert read(channel, "index.html") == before


def test_status_page_readers_never_see_half_a_site(tmp_path: Path) -> None:
    channel = page(tmp_path)
    assert channel.send(batch("status_page", {"text": "Start."}, key="r0")).outcome == "sent"
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                summary = json.loads(read(channel, "api/v2/summary.json"))
                html = read(channel, "index.html")
                if not summary["incidents"] or "</html>" not in html:
                    problems.append("incomplete")
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    senders = [
        threading.Thread(target=lambda n=n: channel.send(
            batch("status_page", {"text": f"Update {n}."}, key=f"r{n}")))
        for n in range(1, 13)
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    thread.join()
    assert problems == []
    updates = json.loads(read(channel, "api/v2/incidents.json"))["incidents"][0][
        "incident_updates"]
    assert len(updates) == 13
    builds = [p for p in (channel.output_dir / "builds").iterdir()]
    assert len(builds) <= 2


def test_status_page_locales(tmp_path: Path) -> None:
    channel = page(tmp_path)
    assert channel.send(batch("status_page", {"text": "Investigating."}, key="en")).outcome
    assert channel.send(batch("status_page", {"text": "Wir untersuchen."}, key="de",
                              locale="de")).outcome is Outcome.sent
    root = json.loads(read(channel, "api/v2/incidents.json"))["incidents"][0]
    german = json.loads(read(channel, "de/api/v2/incidents.json"))["incidents"][0]
    assert [u["body"] for u in root["incident_updates"]] == ["Investigating."]
    assert [u["body"] for u in german["incident_updates"]] == ["Wir untersuchen."]
    assert 'lang="de"' in read(channel, "de/index.html")


# ---- support desk -----------------------------------------------------------------------------


def test_support_desk_writes_and_is_idempotent(tmp_path: Path) -> None:
    channel = SupportDeskChannel(tmp_path / "support")
    ack = batch("support", {"text": "Checkout is failing; we are on it."}, key="s1")
    first = channel.send(ack)
    assert first.outcome is Outcome.sent and first.provider_id == "INC-2026-001/acknowledge.en"
    folder = tmp_path / "support" / "INC-2026-001"
    assert (folder / "acknowledge.en.md").read_text() == "Checkout is failing; we are on it.\n"
    assert (folder / "current.en.md").read_text() == "Checkout is failing; we are on it.\n"
    update = batch("support", {"text": "A fix is rolling out."}, key="s2", stage="update")
    assert channel.send(update).outcome is Outcome.sent
    # A late retry of the older stage answers sent and does not replace the current statement.
    assert channel.send(ack) == first
    assert (folder / "current.en.md").read_text() == "A fix is rolling out.\n"
    index = json.loads((tmp_path / "support" / "holding_statements.json").read_text())
    entry = index["INC-2026-001"]["en"]
    assert entry["stage"] == "update" and entry["key"] == "s2"
    assert entry["text"] == "A fix is rolling out." and entry["published_at"]
    assert channel.accepted("s1") and channel.accepted("s2") and not channel.accepted("s3")
    assert sorted(p.name for p in folder.iterdir()) == [
        "acknowledge.en.md", "current.en.md", "update.en.md"]
