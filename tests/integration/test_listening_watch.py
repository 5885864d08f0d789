"""Spikes, alerts and automatic replies against real servers: the SendGrid and X emulators and
a loopback HTTP server standing in for the Slack and Teams incoming webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from crisiscomms.audience.models import Recipient
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.alerts import alert_targets
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.clock import utcnow
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.identity.identities import system_identity
from crisiscomms.incident.models import Incident, Message
from crisiscomms.incident.service import trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.models import Reaction, ReactionReply, ReactionSource, Sentiment
from crisiscomms.reactions.replies import reply_key
from crisiscomms.reactions.views import automatic_replies, flagged, spikes, summary
from crisiscomms.reactions.watch import watch_once
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = pytest.mark.integration

STATUS_URL = "https://status.example.com/incidents/drill-outage-001"
HOSTILE = "<script>alert(1)</script> *bold* <!channel> & [link](http://evil.example)"


class Recorder:
    """A real HTTP server on loopback that records what webhooks post; ``fail`` answers 500
    to the next N requests of a path."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, int] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if recorder.fail.get(self.path, 0) > 0:
                    recorder.fail[self.path] -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                recorder.requests.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def posted(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.stop()


@pytest.fixture
def listening(workspace: tuple[Settings, Engine], recorder: Recorder,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Engine, int]:
    """The workspace with alert targets and a dashboard URL, and a drill outage incident."""
    monkeypatch.setenv("CRISISCOMMS_ALERT_EMAIL_TO", "pr-lead@example.com")
    monkeypatch.setenv("CRISISCOMMS_ALERT_SLACK_WEBHOOK_URL",
                       f"{recorder.url}/services/T000/B000/secret-slack-token")
    monkeypatch.setenv("CRISISCOMMS_ALERT_TEAMS_WEBHOOK_URL",
                       f"{recorder.url}/webhookb2/secret-teams-token")
    monkeypatch.setenv("CRISISCOMMS_DASHBOARD_URL", "https://crisis.example.com")
    _, engine = workspace
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                     actor=system_identity("test"))
    return settings, engine, bundle.incident_id


def add_reactions(engine: Engine, incident_id: int, rows: list[dict[str, Any]]) -> None:
    with Session(engine) as session:
        for i, row in enumerate(rows):
            session.add(Reaction(**{"source": ReactionSource.x_mention,
                                    "source_id": str(1_800_000_000_000_000_000 + i),
                                    "incident_id": incident_id, "channel": "x", "locale": "en",
                                    "author": f"@user{i}", "text": "the API is down",
                                    "sentiment": Sentiment.neutral, "received_at": utcnow(),
                                    **row}))
        session.commit()


def watch(settings: Settings, engine: Engine) -> Any:
    return watch_once(engine, settings, channels=build_channels(settings),
                      targets=alert_targets(settings))


def storm(engine: Engine, incident_id: int, n: int = 30, first_id: int = 0,
          locale: str = "en") -> None:
    add_reactions(engine, incident_id, [
        {"source_id": str(1_810_000_000_000_000_000 + first_id + i), "author": f"@angry{i}",
         "text": HOSTILE if i == 0 else f"still down after an hour ({i})",
         "sentiment": Sentiment.negative, "score": -0.8, "needs_human": i == 0,
         "reasons_json": json.dumps(["complaint: still down"]) if i == 0 else "[]",
         "received_at": utcnow() - timedelta(seconds=i), "locale": locale}
        for i in range(n)])


def test_a_spike_alerts_once_by_email_slack_and_teams_with_escaped_examples(
        listening: tuple[Settings, Engine, int], recorder: Recorder,
        emulators: EmulatorPair) -> None:
    settings, engine, incident_id = listening
    storm(engine, incident_id)
    report = watch(settings, engine)
    assert report.alerts_failed == [] and len(report.spikes) == 1
    assert sorted(t.split()[1] for t in report.alerts_sent) == ["email", "slack", "teams"]

    slack = recorder.posted("/services/T000/B000/secret-slack-token")
    teams = recorder.posted("/webhookb2/secret-teams-token")
    assert len(slack) == 1 and len(teams) == 1
    blocks = slack[0]["blocks"]
    examples = [b["text"]["text"] for b in blocks if b["text"]["type"] == "plain_text"]
    assert any(HOSTILE in e and "needs a human" in e for e in examples)  # shown, not parsed
    assert not any(HOSTILE in b["text"]["text"] for b in blocks
                   if b["text"]["type"] == "mrkdwn")
    link = "https://crisis.example.com/reactions?incident=DRILL-OUTAGE-001"
    assert blocks[-1]["text"]["text"] == f"<{link}|Open the reactions page>"
    card = teams[0]["attachments"][0]["content"]
    texts = [b["text"] for b in card["body"]]
    assert not any("<script>" in t for t in texts)
    assert any(r"\<script\>alert\(1\)\</script\> \*bold\*" in t for t in texts)
    assert card["actions"][0]["url"] == link

    spike_id = spikes(Session(engine), "DRILL-OUTAGE-001")[0].id
    mails = list(emulators.sendgrid.iter_received(f"spike-alert-{spike_id}"))
    assert [m["to"] for m in mails] == ["pr-lead@example.com"]
    assert "&lt;script&gt;" in mails[0]["html"] and "<script>" not in mails[0]["html"]
    assert HOSTILE in mails[0]["text"] and link in mails[0]["text"]
    for body in (json.dumps(slack), json.dumps(teams), json.dumps(mails)):
        assert "secret-slack-token" not in body and "secret-teams-token" not in body

    again = watch(settings, engine)  # same window: nothing new, nobody alerted twice
    assert again.spikes == [] and again.alerts_sent == []
    assert len(recorder.requests) == 2
    assert len(list(emulators.sendgrid.iter_received(f"spike-alert-{spike_id}"))) == 1
    shown = spikes(Session(engine), "DRILL-OUTAGE-001")
    assert len(shown) == 1 and shown[0].alert_state == "alerted"


def test_a_failed_alert_is_visible_and_retried_next_pass_without_repeating_the_others(
        listening: tuple[Settings, Engine, int], recorder: Recorder,
        emulators: EmulatorPair) -> None:
    settings, engine, incident_id = listening
    recorder.fail["/services/T000/B000/secret-slack-token"] = 1
    storm(engine, incident_id)
    first = watch(settings, engine)
    assert first.alerts_failed == [f"spike {spikes(Session(engine), 'DRILL-OUTAGE-001')[0].id} "
                                   "slack: slack: HTTP 500"]
    assert "secret" not in json.dumps(first.as_dict())
    assert not first.ok
    assert spikes(Session(engine), "DRILL-OUTAGE-001")[0].alerted_at is None

    second = watch(settings, engine)
    assert [s.split()[1] for s in second.alerts_sent] == ["slack"] and second.ok
    assert len(recorder.posted("/services/T000/B000/secret-slack-token")) == 1
    assert len(recorder.posted("/webhookb2/secret-teams-token")) == 1
    assert sum(1 for m in emulators.sendgrid.iter_received() if m["key"] and
               m["key"].startswith("spike-alert-")) == 1
    assert spikes(Session(engine), "DRILL-OUTAGE-001")[0].alert_state == "alerted"


def test_replies_once_per_author_never_to_a_flagged_reaction_in_the_ledger_once(
        listening: tuple[Settings, Engine, int], emulators: EmulatorPair) -> None:
    settings, engine, incident_id = listening
    ann_tweet = "1800000000000000001"
    add_reactions(engine, incident_id, [
        {"source_id": ann_tweet, "author": "@ann", "text": "When will it be FIXED?"},
        {"source_id": "1800000000000000002", "author": "@ann", "text": "when will it be back?"},
        {"source_id": "1800000000000000003", "author": "@bob", "text": "When will you fix it? "
         "My lawyer is asking", "needs_human": True,
         "reasons_json": json.dumps(["legal: lawyer"])},
        {"source_id": "1800000000000000004", "author": "@dave", "text": "thanks for the update"},
        {"source_id": "1800000000000000005", "author": "@old", "text": "when will it be fixed?",
         "received_at": utcnow() - timedelta(minutes=61)},  # too old: for a person
        {"source": ReactionSource.email_reply, "source_id": "<m1@mail.example>",
         "channel": "email", "locale": "es", "author": "carol@example.com",
         "author_name": "Carol", "text": "¿Cuánto tiempo va a tardar esto?"},
        {"source": ReactionSource.email_reply, "source_id": "<m2@mail.example>",
         "channel": "email", "author": "Bounced@Example.com", "text": "how long now?"},
    ])
    with Session(engine) as session:  # a provider said this address bounces
        session.add(Recipient(email="bounced@example.com", consent=False,
                              suppression="bounce"))
        session.commit()
    report = watch(settings, engine)
    assert report.replies.sent == 2, report.replies.as_dict()
    assert report.replies.refused == [] and report.replies.errors == []

    posts = [p for p in emulators.x.iter_received() if p["reply_to"] == ann_tweet]
    assert len(posts) == 1
    assert posts[0]["text"].startswith("@ann ")
    assert not any(p["reply_to"] in ("1800000000000000003", "1800000000000000005")
                   for p in emulators.x.iter_received())
    mails = [m for m in emulators.sendgrid.iter_received() if m["to"] == "carol@example.com"]
    assert len(mails) == 1
    assert not [m for m in emulators.sendgrid.iter_received()
                if m["to"].lower() == "bounced@example.com"]
    assert mails[0]["subject"].startswith("Re: cuándo")
    assert STATUS_URL in mails[0]["text"] and "Hola, Carol:" in mails[0]["text"]

    with Session(engine) as session:
        replies = session.exec(select(ReactionReply)).all()
        assert sorted(r.author for r in replies) == ["@ann", "carol@example.com"]
        keys = [reply_key("DRILL-OUTAGE-001", "x_mention", "@ann"),
                reply_key("DRILL-OUTAGE-001", "email_reply", "carol@example.com")]
        rows = session.exec(select(Delivery).where(Delivery.key.in_(keys))).all()  # type: ignore[attr-defined]
        assert sorted(r.state for r in rows) == [DeliveryState.sent, DeliveryState.sent]
        assert all(r.attempts == 1 for r in rows)
        x_row = next(r for r in rows if r.channel == "x")
        assert x_row.provider_id == posts[0]["id"]
        message = session.get(Message, x_row.message_id)
        assert message is not None and message.stage.startswith("_replies/eta/")
        assert STATUS_URL in json.loads(message.parts_json)["text"]

    with Session(engine) as session:  # what the reactions page lists
        shown = automatic_replies(session, "DRILL-OUTAGE-001")
        assert sorted((r.author, r.rule, r.locale, r.state) for r in shown) == [
            ("@ann", "eta", "en", "sent"), ("carol@example.com", "eta", "es", "sent")]
        assert all(STATUS_URL in r.text for r in shown)

    again = watch(settings, engine)
    assert again.replies.sent == 0
    assert len([p for p in emulators.x.iter_received() if p["reply_to"]]) == 1
    assert len([m for m in emulators.sendgrid.iter_received()
                if m["to"] == "carol@example.com"]) == 1


def test_the_caps_hold_replies_for_a_later_pass(
        listening: tuple[Settings, Engine, int], emulators: EmulatorPair,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, engine, incident_id = listening
    monkeypatch.setenv("CRISISCOMMS_REPLY_MAX_PER_RUN", "1")
    monkeypatch.setenv("CRISISCOMMS_REPLY_MAX_PER_INCIDENT", "2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    add_reactions(engine, incident_id, [
        {"source_id": str(1_800_000_000_000_000_100 + i), "author": f"@asker{i}",
         "text": "how long will this take?"} for i in range(3)])
    sent = [watch(settings, engine).replies for _ in range(3)]
    assert [r.sent for r in sent] == [1, 1, 0]
    assert [r.capped for r in sent] == [2, 1, 1]
    assert len([p for p in emulators.x.iter_received() if p["reply_to"]]) == 2


def test_production_refuses_a_reply_whose_templates_are_only_provisional(
        listening: tuple[Settings, Engine, int], emulators: EmulatorPair) -> None:
    settings, engine, incident_id = listening
    with Session(engine) as session:  # a real incident: only final approvals go out
        session.execute(update(Incident).where(Incident.id == incident_id)  # type: ignore[arg-type]
                        .values(drill=False))
        session.commit()
    add_reactions(engine, incident_id, [
        {"source_id": "1800000000000000009", "author": "@erin", "text": "ETA please?"}])
    report = watch(settings, engine)
    assert report.replies.sent == 0 and len(report.replies.refused) == 1
    refusal = report.replies.refused[0]
    assert "outage/_replies/eta.x.text.en.j2" in refusal and "final" in refusal
    with Session(engine) as session:
        assert session.exec(select(ReactionReply)).all() == []
        assert not [m for m in session.exec(select(Message)).all()
                    if m.stage.startswith("_replies/")]
    assert not any(p["reply_to"] for p in emulators.x.iter_received())


def test_views_and_the_cli_show_counts_flagged_and_spikes_escaped(
        listening: tuple[Settings, Engine, int], emulators: EmulatorPair) -> None:
    from crisiscomms.cli import app

    _, engine, incident_id = listening
    storm(engine, incident_id, n=25)
    with Session(engine) as session:
        counts = summary(session, "DRILL-OUTAGE-001")
        assert counts.total == 25 and counts.needs_human == 1
        assert counts.by_channel == {"x": 25} and counts.by_sentiment == {"negative": 25}
        flags = flagged(session, "DRILL-OUTAGE-001")
        assert [f.text for f in flags] == [HOSTILE]
        assert flags[0].reasons == ("complaint: still down",)

    runner = CliRunner()
    listed = runner.invoke(app, ["reactions", "list", "--incident", "DRILL-OUTAGE-001",
                                 "--needs-human", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["text"] for r in rows] == [HOSTILE]
    table = runner.invoke(app, ["reactions", "list", "--limit", "3"])
    assert table.exit_code == 0 and "more: crisiscomms reactions list --before" in table.output
    watched = runner.invoke(app, ["reactions", "watch", "--once", "--json"])
    assert watched.exit_code == 0, watched.output
    assert len(json.loads(watched.output)["spikes"]) == 1
    missing = runner.invoke(app, ["reactions", "list", "--incident", "NOPE"])
    assert missing.exit_code == 2 and "no incident 'NOPE'" in missing.output


def test_the_watch_flow_runs_the_same_pass(listening: tuple[Settings, Engine, int],
                                           recorder: Recorder) -> None:
    """The Prefect flow's body (``.fn``: no server needed) is the CLI's pass."""
    from crisiscomms.flows.watch_reactions import WatchFailed, watch_reactions

    _, engine, incident_id = listening
    storm(engine, incident_id)
    result = watch_reactions.fn()
    assert len(result["spikes"]) == 1 and len(result["alerts_sent"]) == 3
    recorder.fail["/webhookb2/secret-teams-token"] = 1
    storm(engine, incident_id, first_id=100, locale="de")  # a new spike: its Teams alert fails
    with pytest.raises(WatchFailed, match="teams: HTTP 500") as failed:
        watch_reactions.fn()
    assert "secret" not in str(failed.value)


def test_a_recall_answers_is_mine_affected_with_the_recall_page(
        workspace: tuple[Settings, Engine], emulators: EmulatorPair) -> None:
    settings, engine = workspace
    facts = dict(load_playbook("product_recall", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="product_recall",
                     facts=facts, actor=system_identity("test"))
    add_reactions(engine, bundle.incident_id, [
        {"source_id": "1800000000000000042", "author": "@kim", "locale": "de",
         "text": "Ist meiner betroffen? Ich habe einen KP-170."}])
    report = watch(settings, engine)
    assert report.replies.sent == 1, report.replies.as_dict()
    (post,) = [p for p in emulators.x.iter_received() if p["reply_to"] == "1800000000000000042"]
    assert post["text"].startswith("@kim Danke fürs Nachsehen.")
    assert "+1 800 555 0199" in post["text"]


def test_a_reply_left_sending_by_a_crash_is_asked_about_never_sent_twice(
        listening: tuple[Settings, Engine, int], emulators: EmulatorPair) -> None:
    settings, engine, incident_id = listening
    add_reactions(engine, incident_id, [
        {"source_id": "1800000000000000077", "author": "@fay", "text": "how long?"}])
    assert watch(settings, engine).replies.sent == 1
    key = reply_key("DRILL-OUTAGE-001", "x_mention", "@fay")
    with Session(engine) as session:  # as if the process died before recording the answer
        session.execute(update(Delivery).where(Delivery.key == key)  # type: ignore[arg-type]
                        .values(state=DeliveryState.sending, provider_id=None,
                                updated_at=utcnow() - timedelta(hours=1)))
        session.commit()
    again = watch(settings, engine)
    assert again.replies.sent == 1 and again.replies.errors == []  # found at X, not resent
    with Session(engine) as session:
        row = session.exec(select(Delivery).where(Delivery.key == key)).one()
        assert row.state == DeliveryState.sent
    assert len([p for p in emulators.x.iter_received()
                if p["reply_to"] == "1800000000000000077"]) == 1
