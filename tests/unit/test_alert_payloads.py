"""Spike alert payloads: customer text escaped for each format, the link, no secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from crisiscomms.channels.alerts import (
    EXAMPLE_CHARS,
    SlackAlerts,
    TeamsAlerts,
    alert_targets,
    email_parts,
    slack_escape,
    slack_payload,
    teams_escape,
    teams_payload,
)
from crisiscomms.core.settings import Settings
from crisiscomms.reactions.spikes import Example, SpikeAlert, reactions_link

TEXT = "<!channel> *now* <https://evil.example|click> & [x](y) # \x07bell"


def alert(link: str | None = "https://crisis.example.com/reactions?incident=INC%201") -> SpikeAlert:
    examples = (Example(1, "x_mention", "@ann", TEXT, "negative", True, ("complaint: now",)),
                Example(2, "email_reply", "bo@example.com", "ok " * 500, "neutral", False, ()))
    return SpikeAlert(7, "INC 1", "API <down>", "x", "en",
                      datetime(2026, 12, 1, 10, 5, tzinfo=UTC), 5, 40, 0.75, 4.0, 0.1, examples,
                      link)


def test_slack_examples_are_plain_text_and_the_link_is_escaped_mrkdwn() -> None:
    payload = slack_payload(alert())
    plain = [b["text"]["text"] for b in payload["blocks"] if b["text"]["type"] == "plain_text"]
    assert any("<!channel> *now*" in t for t in plain)  # plain_text: Slack shows it as is
    assert "\x07" not in json.dumps(payload)            # control characters dropped
    link = payload["blocks"][-1]["text"]
    assert link == {"type": "mrkdwn", "text": "<https://crisis.example.com/reactions?"
                                              "incident=INC%201|Open the reactions page>"}
    assert slack_escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    long = next(t for t in plain if t.startswith("bo@example.com"))
    assert len(long.split(":\n", 1)[1]) == EXAMPLE_CHARS and long.endswith("…")


def test_teams_escapes_markdown_and_links_with_an_action() -> None:
    payload = teams_payload(alert())
    card = payload["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    texts = [b["text"] for b in card["body"]]
    assert r"\<\!channel\> \*now\*" in " ".join(texts)
    assert teams_escape("[x](y)") == r"\[x\]\(y\)"
    assert card["actions"][0]["url"].endswith("incident=INC%201")
    assert "actions" not in teams_payload(alert(link=None))["attachments"][0]["content"]


def test_email_html_is_escaped_and_the_text_is_as_sent() -> None:
    subject, text, html = email_parts(alert())
    assert subject.startswith("[INC 1] Reaction spike on x (en)")
    assert "<!channel>" in text and "<!channel>" not in html and "&lt;!channel&gt;" in html
    assert "API &lt;down&gt;" in html
    assert 'href="https://crisis.example.com/reactions?incident=INC%201"' in html


def test_the_reactions_link_quotes_the_reference() -> None:
    assert reactions_link(None, "INC-1") is None
    assert reactions_link("https://d.example/", "INC 1/2") == \
        "https://d.example/reactions?incident=INC%201%2F2"


def test_targets_come_from_settings_and_never_show_their_secret(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                        playbooks_dir=tmp_path, templates_dir=tmp_path,
                        sendgrid_api_key=SecretStr("SG.real-key"),
                        alert_email_to="lead@example.com",
                        alert_slack_webhook_url=SecretStr("https://hooks.slack.com/services/T/B/tok"),
                        alert_teams_webhook_url=SecretStr("https://x.webhook.office.com/tok2"))
    targets = alert_targets(settings)
    assert [t.name for t in targets] == ["email", "slack", "teams"]
    shown = repr(targets) + repr(settings)
    assert "tok" not in shown.replace("token", "") and "SG.real-key" not in shown
    assert repr(SlackAlerts(SecretStr("https://h/tok"))).count("tok") == 0
    assert repr(TeamsAlerts(SecretStr("https://h/tok2"))).count("tok2") == 0
    quiet = Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                     playbooks_dir=tmp_path, templates_dir=tmp_path,
                     alert_email_to="lead@example.com")
    assert alert_targets(quiet) == []  # no SendGrid key: no email alert


def test_a_placeholder_webhook_is_refused(tmp_path: Path) -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                 playbooks_dir=tmp_path, templates_dir=tmp_path,
                 alert_slack_webhook_url=SecretStr("changeme"))
