"""``crisiscomms drill outage --reactions N``: a crowd reacts through the real receivers.

The drill publishes every stage through the real flow (Prefect test server) to the emulators;
a seeded crowd then answers: X replies and mentions read back by the X poller, email replies
as SendGrid Inbound Parse forms, signed Zendesk/Freshdesk tickets, ECDSA-signed provider
events, and after the resolution one-click CSAT ratings. The report is checked against the
database: every text reaction stored once, linked to the message the crowd answered, the
watcher's pass ran without errors, and bounces/unsubscribes of the crowd suppressed recipients
before the resolution went out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, col
from typer.testing import CliRunner

from crisiscomms.audience.models import Recipient
from crisiscomms.cli import app
from crisiscomms.core.database import make_engine
from crisiscomms.delivery.models import Delivery
from crisiscomms.incident.models import Incident
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.reactions.models import Reaction, ReactionReply

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
runner = CliRunner()


def test_a_drill_crowd_reacts_through_every_receiver(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(data))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["demo", "--no-dashboard", "--recipients", "60",
                                 "--reactions", "600", "--status-port", "0"])
    assert result.exit_code == 0, result.output
    engine = make_engine(f"sqlite:///{data / 'crisiscomms.db'}")
    with Session(engine) as s:
        by_source = dict(s.execute(select(col(Reaction.source), func.count())
                                   .group_by(col(Reaction.source))).all())
        suppressed = s.execute(select(func.count()).select_from(Recipient).where(
            col(Recipient.suppression).is_not(None))).scalar_one()
        replies = s.execute(select(func.count()).select_from(ReactionReply)).scalar_one()
        unlinked_replies = s.execute(select(func.count()).select_from(Reaction).where(
            col(Reaction.source).in_(["email_reply", "x_reply"]),
            col(Reaction.message_id).is_(None))).scalar_one()
    assert set(by_source) == {"x_reply", "x_mention", "email_reply", "ticket", "csat"}
    assert unlinked_replies == 0  # every reply is tied to the message it answers
    assert suppressed > 0  # the crowd's bounces, spam reports and unsubscribes
    assert replies > 0  # the eta question got its pre-approved automatic reply
    assert "reactions" in result.output
    # events in: the demo's Alertmanager alert started the next incident's acknowledgement
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "acknowledged" in said and "nobody approving" in said, said
    with Session(engine) as s:
        started = s.execute(select(IntakeEvent.incident_ref).where(
            col(IntakeEvent.outcome) == "start")).scalars().all()
        assert len(started) == 1 and started[0] is not None
        incident = s.execute(select(Incident).where(
            col(Incident.ref) == started[0])).scalar_one()
        sent = dict(s.execute(select(col(Delivery.channel), func.count()).where(
            col(Delivery.incident_id) == incident.id, col(Delivery.state) == "sent")
            .group_by(col(Delivery.channel))).all())
    assert {"status_page", "x", "email", "support"} <= set(sent)
    token = (data / "demo-alertmanager.token")
    assert token.stat().st_mode & 0o077 == 0  # the source's token: its owner's eyes only
    assert token.read_text().strip() not in result.output


def test_drill_json_reports_the_crowd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["drill", "outage", "--recipients", "40", "--reactions", "400",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    reactions = report["reactions"]
    assert reactions["played"] == 400
    for source in ("x", "email_reply", "ticket"):
        row = reactions["by_source"][source]
        assert row["stored"] == row["sent"] > 0, (source, row)  # each once, none lost
    csat = reactions["by_source"]["csat"]
    assert 0 < csat["stored"] <= csat["sent"]  # a second rating replaces the first
    assert reactions["events"]["stored"] >= reactions["events"]["unique"]  # + the emulator's
    assert reactions["linked_as_meant"] == 1.0
    assert reactions["errors"] == [] and reactions["alerts_failed"] == 0
    assert reactions["triage"]["compared"] > 0
    assert report["duplicates"] == 0
    assert all(c["failed"] == 0 for c in report["channels"].values())
