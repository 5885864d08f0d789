"""Mastodon, Bluesky, Slack, Teams and the outgoing webhook against their emulators on loopback,
through the sender's own ``send_once`` (retry, back-off, reconciliation): each is sent exactly
once through lost answers, rate limits and server errors, or marked for a human where the
provider cannot be asked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from crisiscomms.channels.bluesky import BlueskyChannel
from crisiscomms.channels.mastodon_social import MastodonChannel
from crisiscomms.channels.slack import SlackChannel
from crisiscomms.channels.teams import TeamsChannel
from crisiscomms.channels.webhook import WebhookChannel
from crisiscomms.delivery.contract import (
    OutboundBatch,
    Outcome,
    PartProgress,
    RenderedMessage,
)
from crisiscomms.delivery.sender import SendPolicy, send_once
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.intake.signatures import new_secret
from crisiscomms.testing.emulators import Faults, MoreChannels, start_more_channels

pytestmark = pytest.mark.integration

LINK = "https://status.example.com/incidents/inc-2026-015-checkout-and-payments"
FLAG = "\U0001F1EF\U0001F1F5"


@pytest.fixture(scope="module")
def more() -> Iterator[MoreChannels]:
    emulators = start_more_channels()
    yield emulators
    for emulator in emulators.all():
        emulator.stop()


@pytest.fixture(autouse=True)
def _clean(more: MoreChannels) -> None:
    for emulator in more.all():
        emulator.reset()


def facts() -> FactSheet:
    return build_fact_sheet({
        "incident_ref": "INC-2026-015", "organization": "Example Corp",
        "title": "Checkout errors", "severity": "major", "components": ["Checkout"],
        "started_at": "2026-11-23T09:40:00+00:00", "status_page_url": LINK})


def batch(channel: str, parts: dict[str, str], *, key: str, locale: str = "en",
          reply_to: str | None = None, progress: PartProgress | None = None) -> OutboundBatch:
    message = RenderedMessage("outage", "acknowledge", channel, locale, parts, "c" * 64)
    return OutboundBatch(key=key, batch_no=0, facts=facts(), incident_status="investigating",
                         message=message, reply_to=reply_to,
                         progress=progress or PartProgress())


class Sleeps:
    """``send_once``'s sleep, recorded instead of slept (no wall clock in tests)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


POLICY = SendPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=60.0)


def mastodon(more: MoreChannels) -> MastodonChannel:
    return MastodonChannel(access_token=more.mastodon.token, base_url=more.mastodon.url,
                           timeout_s=2.0)


def bluesky(more: MoreChannels) -> BlueskyChannel:
    return BlueskyChannel(handle=more.bluesky.account_handle,
                          app_password=more.bluesky.password, base_url=more.bluesky.url,
                          timeout_s=2.0)


# -- Mastodon -----------------------------------------------------------------------------------


def test_mastodon_thread_with_language_and_a_lost_answer_posts_each_part_once(
        more: MoreChannels) -> None:
    channel = mastodon(more)
    first = send_once(channel, batch("mastodon", {"text": f"Down. {LINK}"}, key="m" * 40,
                                     locale="ja"), POLICY, sleep=Sleeps())[0]
    assert first.outcome is Outcome.sent and first.provider_id
    # the second part's answer is lost: reconciliation finds it, nothing is posted twice
    more.mastodon.set_faults(Faults(lost_response_rate=1.0, pass_first=1, max_faults=1))
    update = batch("mastodon", {"text": f"Update 1/2 {LINK}", "text_2": "Update 2/2 & <more>"},
                   key="n" * 40, locale="ja", reply_to=first.provider_id)
    result, _ = send_once(channel, update, POLICY, sleep=Sleeps())
    assert result.outcome is Outcome.sent, result
    posted = more.mastodon.received()
    assert [p["text"] for p in posted] == [f"Down. {LINK}", f"Update 1/2 {LINK}",
                                           "Update 2/2 & <more>"]
    assert [p["reply_to"] for p in posted] == [None, first.provider_id, posted[1]["id"]]
    assert {p["language"] for p in posted} == {"ja"}
    assert result.provider_id == f"{posted[1]['id']},{posted[2]['id']}"
    assert more.mastodon.stats()["duplicates"] == 0 and more.mastodon.key_count("n" * 40) == 2


def test_mastodon_idempotency_key_answers_the_same_status(more: MoreChannels) -> None:
    channel = mastodon(more)
    one = channel.send(batch("mastodon", {"text": "Once"}, key="i" * 40))
    two = channel.send(batch("mastodon", {"text": "Once"}, key="i" * 40))
    assert one.provider_id == two.provider_id and more.mastodon.key_count("i" * 40) == 1


def test_mastodon_429_waits_for_x_ratelimit_reset(more: MoreChannels) -> None:
    more.mastodon.set_faults(Faults(rate_limit=0, rate_window_s=30))
    sleeps = Sleeps()
    result, attempts = send_once(mastodon(more), batch("mastodon", {"text": "x"}, key="r" * 40),
                                 SendPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=60.0),
                                 sleep=sleeps)
    assert result.outcome is Outcome.retryable and "429" in str(result.reason)
    assert attempts == 2 and len(sleeps.waits) == 1 and 0 < sleeps.waits[0] <= 31
    assert more.mastodon.received() == []


def test_mastodon_over_500_is_refused_by_the_server_and_permanent(more: MoreChannels) -> None:
    result = mastodon(more).send(batch("mastodon", {"text": "a" * 501}, key="o" * 40))
    assert result.outcome is Outcome.permanent
    assert "422" in str(result.reason) and "500" in str(result.reason)


def test_mastodon_bad_token_is_permanent_and_unshown(more: MoreChannels) -> None:
    channel = MastodonChannel(access_token="wrong-token-xyz", base_url=more.mastodon.url)
    result = channel.send(batch("mastodon", {"text": "x"}, key="b" * 40))
    assert result.outcome is Outcome.permanent and "401" in str(result.reason)
    assert "wrong-token-xyz" not in str(result.reason) + repr(channel)


# -- Bluesky ------------------------------------------------------------------------------------


def test_bluesky_thread_reply_refs_langs_and_facets(more: MoreChannels) -> None:
    channel = bluesky(more)
    first = channel.send(batch("bluesky", {"text": f"障害 {FLAG} {LINK}"}, key="a" * 40,
                               locale="ja"))
    assert first.outcome is Outcome.sent
    later = channel.send(batch("bluesky", {"text": "復旧 1/2", "text_2": f"詳細 {LINK}"},
                               key="c" * 40, locale="ja", reply_to=first.provider_id))
    assert later.outcome is Outcome.sent, later
    posts = more.bluesky.received()
    assert [p["langs"] for p in posts] == [["ja"]] * 3
    assert posts[0]["facets"][0]["features"][0]["uri"] == LINK  # the emulator checked bytes
    root_uri = str(first.provider_id).split("#")[0]
    assert [p["reply_to"] for p in posts] == [None, root_uri, posts[1]["id"]]
    assert more.bluesky.sessions_created == 1  # the session is kept, not made per post


def test_bluesky_lost_answer_is_found_by_its_record_key(more: MoreChannels) -> None:
    more.bluesky.set_faults(Faults(lost_response_rate=1.0, pass_first=1, max_faults=1))
    result, _ = send_once(bluesky(more), batch("bluesky", {"text": "Once only"}, key="d" * 40),
                          POLICY, sleep=Sleeps())
    assert result.outcome is Outcome.sent and str(result.provider_id).startswith("at://")
    assert more.bluesky.key_count("d" * 40) == 1 and more.bluesky.stats()["duplicates"] == 0


def test_bluesky_over_300_graphemes_is_refused_by_the_pds(more: MoreChannels) -> None:
    result = bluesky(more).send(batch("bluesky", {"text": FLAG * 301}, key="e" * 40))
    assert result.outcome is Outcome.permanent and "300 graphemes" in str(result.reason)


def test_bluesky_wrong_password_is_permanent(more: MoreChannels) -> None:
    channel = BlueskyChannel(handle=more.bluesky.account_handle, app_password="nope-nope",
                             base_url=more.bluesky.url)
    result = channel.send(batch("bluesky", {"text": "x"}, key="f" * 40))
    assert result.outcome is Outcome.permanent and "nope-nope" not in str(result.reason)


# -- Slack and Teams ------------------------------------------------------------------------------


def test_slack_posts_block_kit_and_retries_a_429_after_retry_after(more: MoreChannels) -> None:
    more.slack.set_faults(Faults(error_rate=1.0, error_statuses=(429,), max_faults=1))
    sleeps = Sleeps()
    channel = SlackChannel(webhook_url=more.slack.webhook_url)
    result, attempts = send_once(channel, batch("slack", {
        "subject": "We're on it [INC-2026-015]", "text": f"# Holding\n\n**Say** <!here> {LINK}"},
        key="s" * 40), POLICY, sleep=sleeps)
    assert result.outcome is Outcome.sent and attempts == 2 and sleeps.waits[0] >= 1
    (posted,) = more.slack.received()
    assert posted["text"] == (f"We're on it [INC-2026-015]\n\n*Holding*\n\n"
                              f"*Say* &lt;!here&gt; {LINK}")


def test_slack_lost_answer_is_left_for_a_human_not_posted_twice(more: MoreChannels) -> None:
    more.slack.set_faults(Faults(lost_response_rate=1.0, max_faults=1))
    channel = SlackChannel(webhook_url=more.slack.webhook_url, timeout_s=2.0)
    result, _ = send_once(channel, batch("slack", {"subject": "S", "text": "T"}, key="t" * 40),
                          POLICY, sleep=Sleeps())
    assert result.outcome is Outcome.unknown
    assert more.slack.stats()["accepted_messages"] == 1


def test_slack_revoked_webhook_is_permanent_and_the_url_unshown(more: MoreChannels) -> None:
    url = more.slack.url + "/services/T0/B0/revoked-secret"
    result = SlackChannel(webhook_url=url).send(batch("slack", {"subject": "S", "text": "T"},
                                                      key="u" * 40))
    assert result.outcome is Outcome.permanent and "no_service" in str(result.reason)
    assert "revoked-secret" not in str(result.reason)


def test_teams_posts_an_adaptive_card_and_retries_a_server_error(more: MoreChannels) -> None:
    more.teams.set_faults(Faults(error_rate=1.0, error_statuses=(503,), max_faults=1))
    result, attempts = send_once(TeamsChannel(webhook_url=more.teams.webhook_url),
                                 batch("teams", {"subject": "S", "text": "A\n\nB"},
                                       key="v" * 40), POLICY, sleep=Sleeps())
    assert result.outcome is Outcome.sent and attempts == 2
    (posted,) = more.teams.received()
    assert posted["text"] == "S\n\nA\n\nB"


# -- the outgoing webhook -----------------------------------------------------------------------


def test_webhook_lost_answer_is_resent_under_the_same_id_and_kept_once(
        more: MoreChannels) -> None:
    more.webhook.set_faults(Faults(lost_response_rate=1.0, max_faults=1))
    channel = WebhookChannel(url=more.webhook.hook_url, secret=more.webhook.secret,
                             timeout_s=2.0)
    result, attempts = send_once(channel, batch("webhook", {"subject": "S", "text": "T"},
                                                key="w" * 40), POLICY, sleep=Sleeps())
    assert result.outcome is Outcome.sent and attempts == 2
    stats = more.webhook.stats()
    assert (stats["accepted_messages"], stats["redelivered"], stats["duplicates"]) == (1, 1, 0)
    (received,) = more.webhook.received("w" * 40)
    assert received["data"]["incident_ref"] == "INC-2026-015"


def test_webhook_signed_with_another_key_is_refused(more: MoreChannels) -> None:
    channel = WebhookChannel(url=more.webhook.hook_url, secret=new_secret())
    result = channel.send(batch("webhook", {"subject": "S", "text": "T"}, key="x" * 40))
    assert result.outcome is Outcome.permanent and "401" in str(result.reason)
    assert more.webhook.received() == []


def test_webhook_urls_never_reach_the_logs(more: MoreChannels,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs each request's URL at INFO; a Slack or Teams webhook URL is a credential."""
    caplog.set_level(logging.DEBUG)
    SlackChannel(webhook_url=more.slack.webhook_url).send(
        batch("slack", {"subject": "S", "text": "T"}, key="y" * 40))
    TeamsChannel(webhook_url=more.teams.webhook_url).send(
        batch("teams", {"subject": "S", "text": "T"}, key="z" * 40))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/services/[redacted]" in logged and "/webhookb2/[redacted]" in logged
    assert more.slack.secret_path not in logged and more.teams.secret_path not in logged


# -- images with alt text --------------------------------------------------------------------------

IMAGE = "https://www.example.com/recalls/kettlepro/photo.jpg"


def test_the_first_post_carries_the_image_with_its_alt_text(more: MoreChannels) -> None:
    """Fetched through the drill's media endpoint, uploaded with its description, attached to
    the thread's first post only, on both networks."""
    proxy = more.environment()["CRISISCOMMS_MEDIA_PROXY_URL"]
    parts = {"text": "Recall 1/2", "text_2": "Recall 2/2", "image": IMAGE,
             "alt": "Foto des zurückgerufenen Produkts KettlePro 1.7 L"}
    m = MastodonChannel(access_token=more.mastodon.token, base_url=more.mastodon.url,
                        media_proxy_url=proxy)
    b = BlueskyChannel(handle=more.bluesky.account_handle, app_password=more.bluesky.password,
                       base_url=more.bluesky.url, media_proxy_url=proxy)
    assert m.send(batch("mastodon", parts, key="g" * 40, locale="de")).outcome is Outcome.sent
    assert b.send(batch("bluesky", parts, key="h" * 40, locale="de")).outcome is Outcome.sent
    for emulator in (more.mastodon, more.bluesky):
        assert [p["alt"] for p in emulator.received()] == [[parts["alt"]], []]


def test_an_image_that_cannot_be_fetched_fails_the_send_and_posts_nothing(
        more: MoreChannels) -> None:
    parts = {"text": "Recall", "image": "http://127.0.0.1:9/photo.jpg", "alt": "A kettle"}
    m = MastodonChannel(access_token=more.mastodon.token, base_url=more.mastodon.url)
    result = m.send(batch("mastodon", parts, key="j" * 40))
    assert result.outcome is Outcome.retryable and "image could not be fetched" in str(
        result.reason)
    assert more.mastodon.received() == []


# -- Slack through the Web API: later stages in the thread, the first post updated in place ------


def slack_bot(more: MoreChannels) -> SlackChannel:
    return SlackChannel(bot_token=more.slack.bot_token, channel=more.slack.channel_id,
                        base_url=more.slack.api_url, timeout_s=2.0)


def test_slack_bot_posts_later_stages_in_the_thread_and_updates_the_first_in_place(
        more: MoreChannels) -> None:
    channel = slack_bot(more)
    first = channel.send(batch("slack", {"subject": "We're on it", "text": "Stage 1"},
                               key="1" * 40))
    assert first.outcome is Outcome.sent and first.provider_id
    later = batch("slack", {"subject": "Resolved", "text": "Stage 2"}, key="2" * 40,
                  reply_to=first.provider_id)
    result = channel.send(later)
    assert result.outcome is Outcome.sent and result.provider_id != first.provider_id
    root, reply = more.slack.thread(str(first.provider_id))
    assert root["blocks"][0]["text"]["text"] == "Resolved" and root["edited"] == 1
    assert reply["thread_ts"] == first.provider_id and reply["text"] == "Resolved"
    assert more.slack.key_count("1" * 40) == more.slack.key_count("2" * 40) == 1


def test_slack_bot_lost_answer_is_found_by_its_metadata_and_not_posted_twice(
        more: MoreChannels) -> None:
    channel = slack_bot(more)
    first = channel.send(batch("slack", {"subject": "S1", "text": "T1"}, key="3" * 40))
    more.slack.set_faults(Faults(lost_response_rate=1.0, max_faults=1))
    result, attempts = send_once(channel, batch("slack", {"subject": "S2", "text": "T2"},
                                                key="4" * 40, reply_to=first.provider_id),
                                 POLICY, sleep=Sleeps())
    assert result.outcome is Outcome.sent and attempts == 2
    assert more.slack.key_count("4" * 40) == 1 and more.slack.stats()["duplicates"] == 0
    root = more.slack.thread(str(first.provider_id))[0]
    assert root["text"] == "S2"  # the resend only updated the first post


def test_slack_bot_refusals_are_permanent_and_the_token_unshown(more: MoreChannels) -> None:
    channel = SlackChannel(bot_token="xoxb-wrong-token", channel=more.slack.channel_id,
                           base_url=more.slack.api_url)
    result = channel.send(batch("slack", {"subject": "S", "text": "T"}, key="5" * 40))
    assert result.outcome is Outcome.permanent and "invalid_auth" in str(result.reason)
    assert "xoxb-wrong-token" not in str(result.reason) + repr(channel)
