"""Channel classes, table-driven over the registry (apprise style), and the backoff delay."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.http_answers import retry_after_s
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.channels.x_social import RebasedSession, XChannel
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.backoff import backoff_delay
from crisiscomms.delivery.contract import (
    Channel,
    ChannelLimits,
    OutboundBatch,
    OutboundRecipient,
    RenderedMessage,
)
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.render.environment import recipient_substitutions

FACTS = build_fact_sheet(
    {
        "incident_ref": "INC-1",
        "organization": "Example Corp",
        "title": "Checkout errors",
        "severity": "major",
        "components": ["Checkout"],
        "started_at": "2026-11-23T09:40:00+00:00",
    }
)

SECRET = "SG.unit-secret-never-shown"
WEBHOOK_SECRET = "whsec_" + "dW5pdC13ZWJob29rLXNlY3JldC1uZXZlci1zaG93bg=="


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A loopback socket that listens but never answers: counts whether anyone connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock
    sock.close()


def make(name: str, tmp_path: Path, url: str) -> Channel:
    """Channel ``name`` as its ``from_settings`` builds it, every provider pointed at ``url``."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, status_page_dir=tmp_path / "status",
        status_page_url="https://status.example.com", organization="Example",
        sendgrid_api_key=SECRET, sendgrid_base_url=url, x_bearer_token="x-unit-token",
        x_consumer_key=None, x_consumer_secret=None, x_access_token=None,
        x_access_token_secret=None, x_base_url=url, http_timeout_s=0.5, subscriptions_url=None,
        mastodon_access_token=SECRET, mastodon_base_url=url,
        bluesky_handle="status.example.com", bluesky_app_password=SECRET, bluesky_base_url=url,
        slack_webhook_url=f"{url}/services/T0/B0/{SECRET}",
        teams_webhook_url=f"{url}/webhookb2/{SECRET}",
        webhook_url=f"{url}/hooks/unit", webhook_secret=WEBHOOK_SECRET,
        twilio_account_sid="AC" + "1" * 32, twilio_auth_token=SECRET, twilio_base_url=url,
        sms_from="+15005550006")
    channel = CHANNEL_CLASSES[name].from_settings(settings)
    assert channel is not None
    return channel


def good_parts(cls: type[Channel]) -> dict[str, str]:
    values = {"subject": "Checkout errors", "html": "<p>Hello %first_name.html%</p>",
              "text": "Hello %first_name%, checkout is failing. We are on it."}
    return {part: values[part] for part in cls.parts}


def over_limit_parts(cls: type[Channel]) -> list[tuple[str, dict[str, str]]]:
    """One message per limit the class declares, each breaking only that limit."""
    limits = cls.limits
    cases: list[tuple[str, dict[str, str]]] = []
    if limits.max_weighted_length is not None:
        cases.append(("weighted", {**good_parts(cls),
                                   "text": "a" * (limits.max_weighted_length + 1)}))
    if limits.max_subject_chars is not None:
        cases.append(("subject", {**good_parts(cls),
                                  "subject": "s" * (limits.max_subject_chars + 1)}))
    if limits.max_segments is not None:  # 153 GSM-7 characters a segment once split
        cases.append(("segments", {**good_parts(cls),
                                   "text": "a" * (153 * limits.max_segments + 1)}))
    if limits.max_body_bytes is not None:
        part = "html" if "html" in cls.parts else "text"
        if limits.max_graphemes is not None:  # many bytes in few graphemes: a family emoji
            family = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"
            big = family * (limits.max_body_bytes // len(family.encode()) + 1)
        else:
            big = "é" * (limits.max_body_bytes // 2 + 1)
        cases.append(("bytes", {**good_parts(cls), part: big}))
    if limits.max_graphemes is not None:
        cases.append(("graphemes", {**good_parts(cls),
                                    "text": "a" * (limits.max_graphemes + 1)}))
    if limits.max_paragraph_chars is not None:
        cases.append(("paragraph", {**good_parts(cls), "text": "ok\n\n"
                                    + "p" * (limits.max_paragraph_chars + 1)}))
    return cases


def message(cls: type[Channel], parts: dict[str, str]) -> RenderedMessage:
    return RenderedMessage(playbook="outage", stage="acknowledge", channel=cls.name,
                           locale="en", parts=parts, content_hash="0" * 64)


NAMES = list(CHANNEL_CLASSES)


def test_registry_is_in_publishing_order() -> None:
    """The status page first (every other message links to it), the email fan-out last."""
    assert NAMES == ["status_page", "x", "mastodon", "bluesky", "support", "slack", "teams",
                     "webhook", "press", "email", "sms"]


@pytest.mark.parametrize("name", NAMES)
def test_class_attributes(name: str, tmp_path: Path, listener: tuple[str, socket.socket]) -> None:
    cls = CHANNEL_CLASSES[name]
    assert cls.name == name
    assert isinstance(cls.parts, tuple) and cls.parts and "text" in cls.parts
    assert isinstance(cls.personal, bool)
    assert isinstance(cls.limits, ChannelLimits)
    assert cls.limits.batch_size >= 1
    assert cls.personal == (cls.limits.batch_size > 1)
    instance = make(name, tmp_path, listener[0])
    assert isinstance(instance, Channel)
    assert type(instance) is cls


@pytest.mark.parametrize("name", NAMES)
def test_validate_accepts_a_good_message(
    name: str, tmp_path: Path, listener: tuple[str, socket.socket]
) -> None:
    cls = CHANNEL_CLASSES[name]
    assert make(name, tmp_path, listener[0]).validate(message(cls, good_parts(cls))) == []


@pytest.mark.parametrize("name", NAMES)
def test_validate_catches_each_limit_and_sends_nothing(
    name: str, tmp_path: Path, listener: tuple[str, socket.socket]
) -> None:
    cls = CHANNEL_CLASSES[name]
    url, sock = listener
    channel = make(name, tmp_path, url)
    cases = over_limit_parts(cls)
    assert cases, f"{name} declares no limit"
    for kind, parts in cases:
        problems = channel.validate(message(cls, parts))
        assert len(problems) == 1, (kind, problems)
    empty = channel.validate(message(cls, {**good_parts(cls), "text": "  "}))
    assert any("empty" in p for p in empty)
    with pytest.raises(BlockingIOError):
        sock.accept()  # nobody connected
    assert not (tmp_path / "status").exists() and not (tmp_path / "support").exists()


@pytest.mark.parametrize("name", NAMES)
def test_repr_shows_no_secret(name: str, tmp_path: Path) -> None:
    assert SECRET not in repr(make(name, tmp_path, "http://127.0.0.1:9"))


# ---- SendGrid request body (pure) -------------------------------------------------------------


def email_batch(recipients: list[OutboundRecipient]) -> OutboundBatch:
    cls = SendGridEmailChannel
    return OutboundBatch(key="k-email-1", batch_no=3, facts=FACTS, incident_status="investigating",
                         message=message(cls, good_parts(cls)), recipients=recipients)


def email_channel(**kwargs: Any) -> SendGridEmailChannel:
    return SendGridEmailChannel(SECRET, from_email="status@example.com", from_name="Example",
                                **kwargs)


def test_sendgrid_body_shape() -> None:
    subs = recipient_substitutions({"first_name": "Zoë"})
    body = email_channel(sandbox=True).build_body(
        email_batch([OutboundRecipient(7, "zoe@example.com", subs)])
    )
    (personalization,) = body["personalizations"]
    assert personalization == {
        "to": [{"email": "zoe@example.com"}],
        "substitutions": subs,
        "custom_args": {"crisiscomms_key": "k-email-1", "crisiscomms_recipient": "7"},
    }
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {"crisiscomms_key": "k-email-1", "crisiscomms_batch": "3"}
    assert body["from"] == {"email": "status@example.com", "name": "Example"}
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert "mail_settings" not in email_channel().build_body(
        email_batch([OutboundRecipient(7, "zoe@example.com")])
    )


def test_sendgrid_refuses_malformed_batches_before_any_io() -> None:
    channel = email_channel(base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="1001 recipients"):
        channel.send(email_batch([OutboundRecipient(i, f"u{i}@example.com") for i in range(1001)]))
    with pytest.raises(ValueError, match="no recipients"):
        channel.send(email_batch([]))
    big = OutboundRecipient(1, "big@example.com", {"%first_name%": "x" * 10_001})
    assert channel.substitution_problems(big)
    assert channel.substitution_problems(OutboundRecipient(2, "ok@example.com")) == []
    with pytest.raises(ValueError, match="substitutions are"):
        channel.send(email_batch([big]))


def test_sendgrid_refuses_an_empty_key_rather_than_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-the-environment")
    with pytest.raises(ValueError, match="empty"):
        SendGridEmailChannel("", from_email="a@example.com", from_name="A")


def test_retry_after_headers() -> None:
    now = 1_800_000_000.0
    assert retry_after_s({"Retry-After": "7"}, now=now) == 7.0
    assert retry_after_s({"X-RateLimit-Reset": str(int(now) + 12)}, now=now) == 12.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert retry_after_s({"Retry-After": date}, now=now) == pytest.approx(30, abs=1)
    assert retry_after_s({}, now=now) is None


def test_x_needs_complete_credentials() -> None:
    with pytest.raises(ValueError, match="all four"):
        XChannel(consumer_key="ck", consumer_secret="cs")
    with pytest.raises(ValueError, match="bearer token"):
        XChannel()


class _Recorder(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.seen.append((str(request.url), kwargs.get("timeout")))
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        return response

    def close(self) -> None:
        pass


def test_rebased_session_rewrites_the_hard_coded_host_and_sets_a_timeout() -> None:
    session = RebasedSession("http://127.0.0.1:8123/prefix/", 0.75)
    recorder = _Recorder()
    session.mount("http://", recorder)
    session.request("POST", "https://api.twitter.com/2/tweets?x=1", json={})
    session.request("GET", "https://api.twitter.com/2/users/me", timeout=3)
    assert recorder.seen == [
        ("http://127.0.0.1:8123/prefix/2/tweets?x=1", 0.75),
        ("http://127.0.0.1:8123/prefix/2/users/me", 3),
    ]


# ---- backoff (the send loop itself: tests/unit/test_send_loop.py) -----------------------------


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    assert backoff_delay(4, None, base_delay_s=1, max_delay_s=5, rng=lambda: 0.0) == 0.0
    assert backoff_delay(4, None, base_delay_s=1, max_delay_s=5, rng=lambda: 0.5) == 2.5
    assert backoff_delay(40, None, base_delay_s=1, max_delay_s=5, rng=lambda: 1.0) == 5.0


@pytest.mark.parametrize(("ours", "theirs", "same"), [
    pytest.param("Down: https://status.example.com/incidents/a-1 (ref A-1)",
                 "Down: https://t.co/AbCdEfGh12 (ref A-1)", True, id="scheme-link"),
    pytest.param("Next update by 10:30. See status.example.com/a.",
                 "Next update by 10:30. See https://t.co/AbCdEfGh12.", True, id="bare-domain"),
    pytest.param("Q&A <here>: https://example.com/qa", "Q&amp;A &lt;here&gt;: https://t.co/x1",
                 True, id="escaped-by-x"),
    pytest.param("Two  spaces\nand a line https://a.example/x",
                 "Two spaces and a line https://t.co/x1", True, id="white-space"),
    pytest.param("Down: https://status.example.com/a (ref A-1)",
                 "Down: https://t.co/AbCdEfGh12 (ref A-2)", False, id="other-ref"),
    pytest.param("Down: https://status.example.com/a", "Down: https://status.example.com/a",
                 True, id="link-not-shortened"),
    pytest.param("Update 1 https://s.example/a", "Update 1 https://t.co/x1 more", False,
                 id="longer"),
])
def test_same_post_text_takes_every_t_co_link_as_the_link_it_replaced(
        ours: str, theirs: str, same: bool) -> None:
    from crisiscomms.channels.x_social import same_post_text

    assert same_post_text(ours, theirs) is same


def test_reconciling_real_sendgrid_cannot_tell_and_asks_nothing() -> None:
    """api.sendgrid.com has no "did you accept key K" call: None (unconfirmed, for a human,
    until the Event Webhook confirms it), without a request."""
    channel = SendGridEmailChannel(SECRET, base_url="https://api.sendgrid.com",
                                   from_email="status@example.com", from_name="Example")
    assert channel.reconcile(email_batch([OutboundRecipient(1, "a@example.com")])) is None


def test_sendgrid_reply_to_names_the_batch_and_rating_links_are_signed() -> None:
    from pydantic import SecretStr

    from crisiscomms.reactions.sources.csat import read_token

    batch = email_batch([OutboundRecipient(7, "ann@example.com", {})])
    assert "reply_to" not in email_channel().build_body(batch)
    body = email_channel(reply_domain="reply.example.com").build_body(batch)
    assert body["reply_to"] == {"email": "replies+k-email-1@reply.example.com",
                                "name": "Example"}
    with pytest.raises(ValueError, match="reply_domain"):
        email_channel(reply_domain="replies@example.com")
    assert email_channel().rating_link(1, 7, 3) is None  # not configured: the fallback
    signed = email_channel(csat_secret=SecretStr("s" * 32), listen_url="https://l.example")
    link = signed.rating_link(1, 7, 3)
    assert link is not None and link.startswith("https://l.example/v1/csat/")
    assert read_token("s" * 32, link.rsplit("/", 1)[1]) is not None
    assert "s" * 32 not in repr(signed) and "s" * 32 not in link
