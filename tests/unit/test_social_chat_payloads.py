"""Issue 15's channels without a network: how Mastodon and Bluesky count, what Slack, Teams and
the outgoing webhook are sent, Bluesky's record keys and link facets, and the render/lint
refusal naming channel, locale and the count."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.bluesky import link_facets, record_key
from crisiscomms.channels.http_answers import retry_after_s
from crisiscomms.channels.mastodon_social import language_of, same_status, status_text
from crisiscomms.channels.slack import mrkdwn, slack_message
from crisiscomms.channels.teams import teams_message
from crisiscomms.channels.webhook import WebhookChannel
from crisiscomms.core.errors import IntakeError, LimitError
from crisiscomms.delivery.contract import ChannelLimits, OutboundBatch, RenderedMessage
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.intake.signatures import new_secret, verify_standard
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.render.environment import StageRenderer
from crisiscomms.render.limits import limit_problems
from crisiscomms.render.text_length import counted_length, graphemes
from crisiscomms.testing.emulators.mastodon import status_html

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
FLAG = "\U0001F1EF\U0001F1F5"
LONG_URL = "https://status.example.com/incidents/" + "x" * 120


# -- counting -----------------------------------------------------------------------------------


def test_graphemes_count_what_a_reader_sees() -> None:
    assert graphemes("abc") == 3
    assert graphemes(FAMILY) == 1 and len(FAMILY) == 5
    assert graphemes(FLAG) == 1
    assert graphemes("e\u0301") == 1  # e + combining acute (NFC makes it é anyway)
    assert graphemes("障害が発生") == 5


def test_mastodon_counts_every_url_as_23_and_bluesky_as_written() -> None:
    text = f"Down {LONG_URL}."
    assert counted_length(text, url_length=23) == len("Down ") + 23 + 1
    assert counted_length(text) == len(text)


def test_limit_problems_name_the_count_and_how_it_was_counted() -> None:
    mastodon = CHANNEL_CLASSES["mastodon"].limits
    bluesky = CHANNEL_CLASSES["bluesky"].limits
    ok = "a" * 477 + " " + LONG_URL  # 477 + 1 + 23 = 501 as Mastodon counts
    assert limit_problems(mastodon, {"text": ok}) == [
        "text is 501 characters (grapheme clusters; every URL counts 23), over the limit of 500"]
    assert limit_problems(mastodon, {"text": ok[1:]}) == []
    assert limit_problems(bluesky, {"text": FLAG * 300}) == []
    (problem,) = limit_problems(bluesky, {"text": FLAG * 301})
    assert problem == "text is 301 graphemes (links count as written), over the limit of 300"


def test_paragraph_limit_names_the_paragraph() -> None:
    limits = ChannelLimits(max_paragraph_chars=10)
    assert limit_problems(limits, {"text": "short\n\n" + "p" * 11}) == [
        "text paragraph 2 is 11 characters, over the limit of 10 per block"]


def test_render_refuses_an_over_limit_post_naming_channel_locale_and_count(
        tmp_path: Path) -> None:
    """A Bluesky post over 300 graphemes is refused at render (never truncated), the error
    naming playbook, stage, channel, locale and the count, with the short variant to add."""
    templates = tmp_path / "templates"
    (templates / "outage" / "acknowledge").mkdir(parents=True)
    (templates / "outage" / "acknowledge" / "bluesky.text.ja.j2").write_text(
        "障" * 290 + " {{ facts.incident_ref }}", encoding="utf-8")
    playbook = load_playbook("outage", PROJECT_ROOT / "playbooks")
    facts = build_fact_sheet(dict(playbook.drill_facts))
    renderer = StageRenderer(templates, CHANNEL_CLASSES)
    with pytest.raises(LimitError) as caught:
        renderer.render_message(playbook, playbook.stage("acknowledge"), facts, "bluesky", "ja")
    text = str(caught.value)
    count = 290 + 1 + len(facts.incident_ref)
    assert "channel bluesky" in text and "locale ja" in text
    assert f"text is {count} graphemes" in text and "over the limit of 300" in text
    assert "outage/acknowledge/bluesky.short.ja.j2" in text
    assert caught.value.fields()["channel"] == "bluesky"
    assert caught.value.fields()["locale"] == "ja"


# -- Mastodon -----------------------------------------------------------------------------------


def test_mastodon_html_reads_back_as_the_text_we_sent() -> None:
    ours = f"Tom & Jerry <3: {LONG_URL}\n\nSecond paragraph\nline two"
    content = status_html(ours)
    assert "<a href=" in content and "&amp;" in content and "<br />" in content
    assert same_status(ours, content)
    assert not same_status(ours + " changed", content)
    assert status_text("<p>a</p><p>b<br />c</p>") == "a b c"


def test_mastodon_language_is_the_iso_639_1_code() -> None:
    assert [language_of(x) for x in ("en", "pt-BR", "zh_Hant", "JA")] == ["en", "pt", "zh",
                                                                          "ja"]


# -- Bluesky ------------------------------------------------------------------------------------


def test_record_keys_are_valid_deterministic_tids() -> None:
    keys = {record_key("a" * 40, n) for n in range(1, 10)}
    assert len(keys) == 9
    assert record_key("a" * 40, 1) == record_key("a" * 40, 1) != record_key("b" * 40, 1)
    for key in keys:
        assert re.fullmatch(r"[234567abcdefghij][234567a-z]{12}", key)


def test_link_facets_cover_each_link_in_utf8_bytes() -> None:
    text = f"障害 {FLAG}: {LONG_URL}. 詳細 https://example.com/a?b=1"
    facets = link_facets(text)
    data = text.encode()
    assert [data[f.index.byte_start:f.index.byte_end].decode() for f in facets] == [
        LONG_URL, "https://example.com/a?b=1"]
    assert [f.features[0].uri for f in facets] == [LONG_URL, "https://example.com/a?b=1"]


# -- Slack and Teams ---------------------------------------------------------------------------


def _message(channel: str, parts: dict[str, str], locale: str = "en") -> RenderedMessage:
    return RenderedMessage("outage", "acknowledge", channel, locale, parts, "0" * 64)


def test_slack_escapes_facts_and_turns_light_markdown_into_mrkdwn() -> None:
    assert mrkdwn("# Title\n**Severity:** <!channel> & co\n- one") == (
        "*Title*\n*Severity:* &lt;!channel&gt; &amp; co\n• one")
    payload = slack_message(_message("slack", {"subject": "We're on it [A-1]",
                                               "text": "First\n\nSecond https://s.example/1"}))
    assert payload["text"] == "We're on it [A-1]"
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section"]
    assert payload["blocks"][0]["text"] == {"type": "plain_text", "text": "We're on it [A-1]",
                                            "emoji": True}
    assert payload["blocks"][2]["text"]["text"] == "Second https://s.example/1"


def test_teams_card_has_the_subject_then_one_block_per_paragraph() -> None:
    payload = teams_message(_message("teams", {"subject": "S", "text": "## Key facts\n\n- a"},
                                     locale="de"))
    (attachment,) = payload["attachments"]
    assert payload["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"], card["lang"]) == ("AdaptiveCard", "1.4", "de")
    assert [b["text"] for b in card["body"]] == ["S", "**Key facts**", "- a"]
    assert all(b["wrap"] for b in card["body"])


# -- the outgoing webhook -----------------------------------------------------------------------


def _webhook_batch() -> OutboundBatch:
    playbook = load_playbook("outage", PROJECT_ROOT / "playbooks")
    facts = build_fact_sheet(dict(playbook.drill_facts))
    return OutboundBatch(key="k" * 40, batch_no=0, facts=facts, incident_status="investigating",
                         message=_message("webhook", {"subject": "S", "text": "T"}))


def test_webhook_is_signed_so_the_intake_check_verifies_it() -> None:
    secret = new_secret()
    channel = WebhookChannel(url="http://127.0.0.1:9/hooks/x", secret=secret)
    batch = _webhook_batch()
    body, headers = channel.signed(batch, now=1_800_000_000)
    assert verify_standard(headers, body, [secret], now=1_800_000_010, window_s=300) == "k" * 40
    payload = json.loads(body)
    assert payload["type"] == "crisiscomms.message"
    assert payload["data"]["incident_ref"] == batch.facts.incident_ref
    assert (payload["data"]["subject"], payload["data"]["text"]) == ("S", "T")
    with pytest.raises(IntakeError, match="no key matched"):
        verify_standard(headers, body.replace(b'"T"', b'"X"'), [secret], now=1_800_000_010,
                        window_s=300)
    with pytest.raises(IntakeError, match="no key matched"):
        verify_standard(headers, body, [new_secret()], now=1_800_000_010, window_s=300)
    assert secret not in repr(channel)


def test_webhook_refuses_a_malformed_secret_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        WebhookChannel(url="http://127.0.0.1:9/hooks/x", secret="not-a-whsec-secret")
    assert "not-a-whsec-secret" not in str(caught.value)


# -- back-off headers ----------------------------------------------------------------------------


def test_retry_after_reads_each_providers_back_off() -> None:
    now = 1_800_000_000.0
    assert retry_after_s({"Retry-After": "3"}, now=now) == 3.0
    assert retry_after_s({"ratelimit-reset": str(int(now) + 40)}, now=now) == 40.0
    moment = datetime.fromisoformat("2027-01-15T08:00:30+00:00").timestamp()
    # Mastodon: an ISO 8601 time, as Mastodon.py also reads it
    assert retry_after_s({"X-RateLimit-Reset": "2027-01-15T08:00:30.000Z"},
                         now=moment - 12) == pytest.approx(12)
    assert retry_after_s({}, now=now) is None


# -- lint: the new limits with the longest plausible facts ---------------------------------------


def test_lint_finds_a_bluesky_post_over_300_only_with_the_longest_facts(tmp_path: Path) -> None:
    """With X's short post as its short variant (its first draft), the Spanish outage update
    fits Bluesky with the drill facts and not with the longest plausible ones: lint says so,
    naming message, channel, locale, the count and the fact set."""
    import shutil

    from approvers import approve_all

    from crisiscomms.playbook.lint import lint_playbook

    shutil.copytree(PROJECT_ROOT / "playbooks", tmp_path / "playbooks")
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates" / "outage", templates / "outage")
    (templates / "outage" / "update" / "bluesky.short.es.j2").write_text(
        '{% include "outage/update/x.short.es.j2" %}\n', encoding="utf-8")
    approve_all(templates, tmp_path, kind="provisional")
    problems = lint_playbook("outage", tmp_path / "playbooks", templates, CHANNEL_CLASSES)
    over = [p for p in problems if p.channel == "bluesky"]
    assert over, problems
    assert {(p.message, p.locale, p.facts, p.field) for p in over} == {
        ("update", "es", "longest", "text")}
    assert re.search(r"text is 3\d\d graphemes \(links count as written\), over the limit "
                     r"of 300", over[0].text)
    assert [p for p in problems if p.channel != "bluesky"] == []


def test_alt_text_and_image_parts_have_their_own_limits() -> None:
    mastodon = CHANNEL_CLASSES["mastodon"].limits
    assert limit_problems(mastodon, {"alt": "a" * 1500, "image": "https://e.example/p.jpg"}) == []
    assert limit_problems(mastodon, {"alt": "a" * 1501}) == [
        "alt is 1501 graphemes, over the limit of 1500 for an image description"]
    assert limit_problems(mastodon, {"image": "photo.jpg"}) == ["image is not one http(s) URL"]
    assert limit_problems(mastodon, {"alt": " "}) == ["alt is empty"]


def test_the_recall_renders_its_photo_and_alt_text_for_mastodon_and_bluesky() -> None:
    """The optional parts are rendered where their templates exist (the recall), and only
    there (the outage has no image)."""
    from crisiscomms.render.approvals import ApprovalLock

    templates = PROJECT_ROOT / "templates"
    renderer = StageRenderer(templates, CHANNEL_CLASSES, approvals=ApprovalLock(templates))
    recall = load_playbook("product_recall", PROJECT_ROOT / "playbooks")
    facts = build_fact_sheet(dict(recall.drill_facts))
    for channel in ("mastodon", "bluesky"):
        message, _ = renderer.render_message(recall, recall.stage("announce"), facts, channel,
                                             "ja")
        assert message.parts["image"] == str(facts.recall.photo_url)
        assert facts.recall.product_name in message.parts["alt"]
        assert message.parts["alt"].startswith("リコール対象製品")
    outage = load_playbook("outage", PROJECT_ROOT / "playbooks")
    message, _ = renderer.render_message(
        outage, outage.stage("acknowledge"), build_fact_sheet(dict(outage.drill_facts)),
        "mastodon", "en")
    assert "image" not in message.parts and "alt" not in message.parts
