"""The support page and the executive overview, run by AppTest against a real SQLite database
whose numbers are known: a drill outage acknowledged and published through the real channels
(the emulators), then known SendGrid events, reactions and CSAT ratings, and fixed send times.

Support: the approved, published statement in the browser's language (or the one picked), the
playbook's Q&A and remedies in it, never an unapproved update's words. Executive: drills hidden
until asked for; times to first message and to resolution, reach per channel, reactions,
needs-a-human and CSAT exactly as stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dashboard_apptest import open_page, texts
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import decode_ids
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.identity.identities import Identity
from crisiscomms.identity.roles import ROLE_PERMISSIONS, Permission, Role
from crisiscomms.incident.models import Incident
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment
from crisiscomms.reactions.sources.sendgrid_events import SendGridEvent, record_events

pytestmark = pytest.mark.integration

REF = "DRILL-OVERVIEW-1"
STARTED = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)  # the outage's drill fact
PR_LEAD = Identity("pr-lead", "PR lead", "dashboard")
APPROVER = Identity("approver", "Approver", "dashboard")
UPDATE_CAUSE = "UNAPPROVED-CAUSE a squirrel chewed through the fibre"
DELIVERED, OPENED, BOUNCED = 20, 8, 3
SENTIMENTS = ["negative"] * 6 + ["positive"] * 3 + ["neutral"]  # 10 comments
RATINGS = (5, 4, 2, 5)  # CSAT: 3 of 4 are 4-5


def _facts(settings: Settings, **over: Any) -> dict[str, Any]:
    from crisiscomms.playbook.loader import load_playbook

    return {**load_playbook("outage", settings.playbooks_dir).drill_facts, "incident_ref": REF,
            **over}


def _publish(engine: Engine, settings: Settings, stage: str, **facts: Any) -> None:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.channels.registry import build_channels
    from crisiscomms.delivery.ledger import pending_ids
    from crisiscomms.delivery.sender import publish_deliveries
    from crisiscomms.incident.service import approve, plan_bundle, trigger

    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts=_facts(settings, **facts), stage=stage, actor=PR_LEAD)
    if not bundle.approved:  # the acknowledgement is auto_send; the others are approved
        bundle = approve(engine, incident_ref=REF, stage=stage, approver=APPROVER,
                         seen_hash=bundle.bundle_hash, settings=settings)
        assert bundle.approved
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    with Session(engine) as session:
        ids = [i for group in pending_ids(session, bundle.message_ids).values() for i in group]
    report = publish_deliveries(engine, build_channels(settings), ids,
                                playbooks_dir=settings.playbooks_dir, max_attempts=2)
    assert report.failed == 0, report.errors


def _known_reactions_and_events(engine: Engine) -> None:
    with Session(engine) as session:
        incident = session.exec(select(Incident).where(Incident.ref == REF)).one()
        assert incident.id is not None
        # every channel's first message out 3 min after the start, the email 7 min after
        session.execute(update(Delivery).where(col(Delivery.incident_id) == incident.id)
                        .values(updated_at=STARTED + timedelta(minutes=3)))
        session.execute(update(Delivery).where(col(Delivery.incident_id) == incident.id,
                                               col(Delivery.channel) == "email")
                        .values(updated_at=STARTED + timedelta(minutes=7)))
        email = session.exec(select(Delivery).where(Delivery.incident_id == incident.id,
                                                    Delivery.channel == "email")).first()
        assert email is not None
        recipients = decode_ids(email.recipient_ids)
        assert len(recipients) >= DELIVERED
        events = [SendGridEvent(f"d{r}", "delivered", "x@example.com",
                                STARTED + timedelta(minutes=8), email.key, r)
                  for r in recipients[:DELIVERED]]
        events += [SendGridEvent(f"o{r}", "open", "x@example.com",
                                 STARTED + timedelta(minutes=12), email.key, r)
                   for r in recipients[:OPENED]]
        events += [SendGridEvent(f"b{r}", "bounce", "x@example.com",
                                 STARTED + timedelta(minutes=9), email.key, r,
                                 bounce_type="blocked")
                   for r in recipients[DELIVERED:DELIVERED + BOUNCED]]
        record_events(session, events)
        record_events(session, events[:5])  # SendGrid's replay: counted once
        for n, sentiment in enumerate(SENTIMENTS):
            session.add(Reaction(source=ReactionSource.x_mention, source_id=f"t{n}",
                                 incident_id=incident.id, channel="x", locale="en",
                                 author=f"@u{n}", text=f"<b>comment {n}</b>",
                                 sentiment=Sentiment(sentiment), needs_human=n < 2,
                                 received_at=STARTED + timedelta(minutes=10 + n)))
        for n, rating in enumerate(RATINGS):
            session.add(Reaction(source=ReactionSource.csat, source_id=f"{incident.id}:{n}",
                                 incident_id=incident.id, channel="email", author=f"r{n}",
                                 rating=rating, sentiment=Sentiment(
                                     "negative" if rating <= 2 else "positive"),
                                 received_at=STARTED + timedelta(minutes=30)))
        session.commit()


@pytest.fixture
def outage(workspace: tuple[Settings, Engine]) -> Iterator[tuple[Settings, Engine]]:
    """The acknowledged, published drill outage with known events and reactions; Streamlit's
    caches cleared around the test (pages run in this process)."""
    import streamlit as st

    settings, engine = workspace
    st.cache_resource.clear()
    st.cache_data.clear()
    _publish(engine, settings, "acknowledge")
    _known_reactions_and_events(engine)
    yield settings, engine
    st.cache_resource.clear()
    st.cache_data.clear()


def _frames(app: Any) -> list[Any]:
    return [df.value for df in app.dataframe]


# -- support -------------------------------------------------------------------------------


SUPPORT_ROLES = [r for r in Role if Permission.view_support in ROLE_PERMISSIONS[r]]


@pytest.mark.parametrize("role", SUPPORT_ROLES, ids=str)
def test_support_shows_statement_qa_and_remedies_in_the_browser_language(
        outage: tuple[Settings, Engine], role: Role) -> None:
    from crisiscomms.playbook.loader import load_playbook

    settings, _ = outage
    book = load_playbook("outage", settings.playbooks_dir)
    app = open_page("support_page.py", role)
    app.context["locale"] = "de-AT"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox[0].value == "de"
    shown = texts(app)
    assert REF in shown
    statement = [c.value for c in app.code]
    assert len(statement) == 1 and REF in statement[0]
    assert "Störung" in statement[0] or "Vorfall" in statement[0] or "Ausfall" in statement[0]
    for item in book.qa["de"]:
        assert item.q.replace("?", "") in shown.replace("\\", "").replace("?", "")
    remedies = next(f for f in _frames(app) if "up to" in f.columns)
    assert list(remedies["what"]) == [r.what for r in book.remedies["de"]]
    assert list(remedies["up to"]) == [r.limit for r in book.remedies["de"]]
    assert not app.text_input and not app.text_area and not app.button  # nothing editable


def test_support_switches_locale_and_never_shows_unapproved_words(
        outage: tuple[Settings, Engine]) -> None:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook

    settings, engine = outage
    # an update triggered but not approved: its words must not reach support
    update_bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                            facts=_facts(settings, cause=UPDATE_CAUSE), stage="update",
                            actor=PR_LEAD)
    assert not update_bundle.approved
    app = open_page("support_page.py", Role.support)
    app.context["locale"] = "xx-YY"  # no such language: the playbook's default
    app.run()
    assert app.selectbox[0].value == "en"
    app.selectbox[0].select("ja").run()
    assert not app.exception, [e.value for e in app.exception]
    shown = texts(app)
    assert "UNAPPROVED" not in shown and "squirrel" not in shown
    book = load_playbook("outage", settings.playbooks_dir)
    assert book.qa["ja"][0].q in shown.replace("\\", "")
    remedies = next(f for f in _frames(app) if "up to" in f.columns)
    assert list(remedies["what"]) == [r.what for r in book.remedies["ja"]]
    assert "acknowledge" in shown  # the published stage, not the pending update
    assert "overdue" in shown  # the drill's next update (23 Nov, 10:10) has passed


# -- executive -----------------------------------------------------------------------------


EXECUTIVE_ROLES = [r for r in Role if Permission.view_executive in ROLE_PERMISSIONS[r]]


@pytest.mark.parametrize("role", EXECUTIVE_ROLES, ids=str)
def test_the_overview_hides_drills_until_asked(outage: tuple[Settings, Engine],
                                                role: Role) -> None:
    app = open_page("executive_page.py", role).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "drills are hidden" in texts(app)
    assert not app.dataframe
    app.toggle[0].set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    glance = _frames(app)[0]
    assert list(glance["incident"]) == [REF]
    assert not app.button and not app.text_input  # read-only


def test_the_overview_figures_match_the_known_database(outage: tuple[Settings,
                                                                     Engine]) -> None:
    settings, engine = outage
    with Session(engine) as session:
        planned: dict[str, int] = {}
        for row in session.exec(select(Delivery).where(col(Delivery.incident_id).is_not(None))):
            planned[row.channel] = planned.get(row.channel, 0) + row.recipient_count
            assert row.state == DeliveryState.sent
    app = open_page("executive_page.py", Role.executive)
    app.session_state["include_drills"] = True
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Start → first message out"] == "3 min"
    assert metrics["Start → resolution"] == "—"
    assert metrics["Next update due"].startswith("OVERDUE")
    assert metrics["Reactions"] == str(len(SENTIMENTS) + len(RATINGS))
    assert metrics["Negative"] == f"{(6 + 1) / 14:.0%}"
    assert metrics["Need a person"] == "2"
    assert metrics["CSAT (4–5 of 5)"] == "75%"
    assert f"Next update overdue: {REF}" in texts(app)
    reach = next(f for f in _frames(app) if "delivered" in f.columns)
    by_channel = {r["channel"]: r for r in reach.to_dict("records")}
    assert by_channel["email"]["planned"] == planned["email"] == by_channel["email"]["sent"]
    assert (by_channel["email"]["delivered"], by_channel["email"]["opened"],
            by_channel["email"]["bounced"], by_channel["email"]["failed"]) == (
        DELIVERED, OPENED, BOUNCED, 0)
    assert by_channel["x"]["sent"] == planned["x"] and by_channel["x"]["delivered"] == 0
    assert len(app.get("vega_lite_chart")) == 2  # reach and reactions over time

    # the resolution: 11:25 by the drill's facts, 1 h 45 min after the start
    _publish(engine, settings, "resolve")
    import streamlit as st

    st.cache_data.clear()  # the next refresh interval
    app.run()
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Start → resolution"] == "1 h 45 min"
    assert metrics["Next update due"] == "resolved"
