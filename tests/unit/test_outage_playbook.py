"""The outage playbook renders every stage and channel from its drill facts, within limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.delivery.contract import RenderedMessage
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.render.environment import StageRenderer
from crisiscomms.render.text_weight import x_weighted_length

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
TEMPLATES = ROOT / "templates"


CHANNELS = CHANNEL_CLASSES
DEFAULT_CHANNELS = {name for name, cls in CHANNELS.items() if cls.default_enabled}
OUTAGE_CHANNELS = DEFAULT_CHANNELS | {"sms", "mastodon", "bluesky", "slack", "teams", "webhook"}
"""Every stage names its channels: those enabled by default, SMS and those of issue 15's other
channels (which are not)."""
STAGES = ("acknowledge", "update", "resolve")


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook("outage", PLAYBOOKS)


@pytest.fixture(scope="module")
def renderer() -> StageRenderer:
    return StageRenderer(TEMPLATES, CHANNELS)


def _facts(playbook: Playbook, **overrides: Any) -> FactSheet:
    return build_fact_sheet({**playbook.drill_facts, **overrides})


def _render(
    renderer: StageRenderer, playbook: Playbook, stage_id: str, facts: FactSheet,
    locale: str = "en",
) -> dict[str, RenderedMessage]:
    stage = playbook.stage(stage_id)
    return {m.channel: m for m, _ in renderer.render_stage(playbook, stage, facts)
            if m.locale == locale}


def _main_text(message: RenderedMessage) -> str:
    return message.parts["text"]


def test_playbook_shape(playbook: Playbook) -> None:
    assert playbook.name == "outage"
    assert playbook.locales == ("en", "es", "fr", "de", "ja")
    assert [s.id for s in playbook.stages] == list(STAGES)
    assert [str(s.incident_status) for s in playbook.stages] == [
        "investigating",
        "identified",
        "resolved",
    ]
    assert playbook.stage("acknowledge").auto_send is True
    assert not playbook.stage("update").auto_send
    assert not playbook.stage("resolve").auto_send
    # the acknowledgement's SMS go out at once; the update and resolution wait out the night
    assert [s.urgent for s in playbook.stages] == [True, False, False]
    for stage in playbook.stages:
        assert set(playbook.channels_of(stage, CHANNELS)) == OUTAGE_CHANNELS
    assert playbook.recipient_fields["first_name"].fallback_for("en") == "there"
    for fact in (
        "title",
        "severity",
        "components",
        "impact",
        "contact_url",
        "status_page_url",
        "organization",
        "incident_ref",
        "started_at",
    ):
        assert fact in playbook.required_facts
    assert "next_update_at" in playbook.stage("acknowledge").required_facts
    assert {"cause", "next_update_at"} <= set(playbook.stage("update").required_facts)
    assert "resolved_at" in playbook.stage("resolve").required_facts


def test_drill_facts_are_complete(playbook: Playbook) -> None:
    facts = _facts(playbook)
    assert facts.incident_ref == "DRILL-OUTAGE-001"
    for stage in playbook.stages:
        assert facts.missing(playbook.required_for(stage)) == []
    assert facts.next_update_at is not None
    assert (facts.next_update_at - facts.started_at).total_seconds() == 30 * 60


@pytest.mark.parametrize("stage_id", STAGES)
def test_every_channel_renders_with_drill_facts(
    renderer: StageRenderer, playbook: Playbook, stage_id: str
) -> None:
    facts = _facts(playbook)
    messages = _render(renderer, playbook, stage_id, facts)
    assert set(messages) == set(OUTAGE_CHANNELS)
    for channel, message in messages.items():
        assert facts.incident_ref in _main_text(message), channel
        assert message.locale == "en"
        for part, text in message.parts.items():
            assert text.strip(), f"{channel}.{part} is empty"
    for channel in ("x", "email"):
        assert facts.status_page_url is not None
        assert facts.status_page_url in _main_text(messages[channel]), channel
    email = messages["email"]
    subject = email.parts["subject"]
    assert "\n" not in subject and len(subject) <= 78, subject
    assert facts.incident_ref in subject
    assert "%first_name.html%" in email.parts["html"]
    assert "%first_name%" in email.parts["text"]
    assert "%first_name%" not in email.parts["html"]
    assert facts.status_page_url in email.parts["html"]
    assert facts.contact_url in email.parts["text"]
    assert facts.contact_url in email.parts["html"]
    assert facts.contact_url in messages["support"].parts["text"]
    assert x_weighted_length(messages["x"].parts["text"]) <= 280
    assert messages["x"].content_hash


def test_update_mentions_workaround_only_when_known(
    renderer: StageRenderer, playbook: Playbook
) -> None:
    with_workaround = _render(renderer, playbook, "update", _facts(playbook))
    facts = _facts(playbook).model_dump()
    facts["workaround"] = None
    without = _render(renderer, playbook, "update", build_fact_sheet(facts))
    assert "workaround" in with_workaround["email"].parts["text"].lower()
    assert "workaround" not in without["email"].parts["text"].lower()
    assert "workaround" not in without["support"].parts["text"].lower()


def test_optional_facts_may_be_absent(renderer: StageRenderer, playbook: Playbook) -> None:
    raw = dict(playbook.drill_facts)
    for optional in ("workaround", "remedy", "contact_phone", "extra"):
        raw.pop(optional, None)
    facts = build_fact_sheet(raw)
    for stage_id in STAGES:
        messages = _render(renderer, playbook, stage_id, facts)
        assert set(messages) == set(OUTAGE_CHANNELS)


def test_one_component_reads_in_the_singular(renderer: StageRenderer, playbook: Playbook) -> None:
    facts = _facts(playbook, components=["API"])
    messages = _render(renderer, playbook, "acknowledge", facts)
    assert "API isn't working" in messages["email"].parts["text"]
    assert "API isn't working" in messages["email"].parts["html"]


@pytest.mark.parametrize("stage_id", STAGES)
def test_fact_values_are_escaped_in_html_only(
    renderer: StageRenderer, playbook: Playbook, stage_id: str
) -> None:
    evil = "Sign-in fails <script>alert(1)</script> & more"
    facts = _facts(playbook, impact=evil, cause=evil)
    messages = _render(renderer, playbook, stage_id, facts)
    html = messages["email"].parts["html"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert evil in messages["email"].parts["text"]


@pytest.mark.parametrize("stage_id", STAGES)
def test_long_title_falls_back_to_the_short_x_variant(
    renderer: StageRenderer, playbook: Playbook, stage_id: str
) -> None:
    title = ("Sign-in, API requests, scheduled exports and webhooks failing " * 4)[:200].strip()
    facts = _facts(playbook, title=title)
    assert len(facts.title) >= 195
    message, hashes = renderer.render_message(playbook, playbook.stage(stage_id), facts, "x", "en")
    text = message.parts["text"]
    assert x_weighted_length(text) <= 280
    main = TEMPLATES / "outage" / stage_id / "x.text.en.j2"
    if "facts.title" in main.read_text(encoding="utf-8"):
        assert f"outage/{stage_id}/x.short.en.j2" in hashes
    assert facts.incident_ref in text
    assert facts.status_page_url is not None and facts.status_page_url in text
    # The whole stage still renders with the long title.
    assert set(_render(renderer, playbook, stage_id, facts)) == set(OUTAGE_CHANNELS)


def test_long_cause_falls_back_to_the_short_x_variant(
    renderer: StageRenderer, playbook: Playbook
) -> None:
    cause = (
        "A configuration change to our load balancers sent traffic to servers "
        "that weren't ready for it, in every region at the same time. "
    ) * 2
    facts = _facts(playbook, cause=cause)
    message, hashes = renderer.render_message(playbook, playbook.stage("update"), facts, "x", "en")
    assert "outage/update/x.short.en.j2" in hashes
    assert x_weighted_length(message.parts["text"]) <= 280
    assert facts.incident_ref in message.parts["text"]


@pytest.mark.parametrize("stage_id", STAGES)
def test_drill_x_post_uses_the_main_variant(
    renderer: StageRenderer, playbook: Playbook, stage_id: str
) -> None:
    _, hashes = renderer.render_message(
        playbook, playbook.stage(stage_id), _facts(playbook), "x", "en"
    )
    assert f"outage/{stage_id}/x.text.en.j2" in hashes


@pytest.mark.parametrize("stage_id", STAGES)
def test_public_channels_do_not_address_a_recipient(stage_id: str) -> None:
    for channel in ("x", "status_page", "support"):
        for path in (TEMPLATES / "outage" / stage_id).glob(f"{channel}.*.j2"):
            assert "recipient" not in path.read_text(encoding="utf-8"), path
