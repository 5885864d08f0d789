"""A person answers a flagged reaction from the reactions page with a pre-approved reply:
sent once on the reaction's own channel (the X emulator gets one reply to that post), one
ledger row, audited as the person; a second reply to the same author is refused; only the PR
lead sees the form (an admin reads the page but cannot reply; the others cannot open it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dashboard_apptest import open_page, texts
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.clock import utcnow
from crisiscomms.core.settings import Settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.identity.identities import system_identity
from crisiscomms.identity.models import AuditEvent
from crisiscomms.identity.roles import Role
from crisiscomms.incident.service import trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.models import Reaction, ReactionReply, ReactionSource, Sentiment
from crisiscomms.reactions.person_replies import ReplyRefused, answerable_flagged, send_reply
from crisiscomms.reactions.replies import reply_key
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = pytest.mark.integration
PAGE = "reactions_page.py"
REF = "DRILL-OUTAGE-001"
POST = "1850000000000000001"
HOSTILE = "My lawyer will hear about this [click](https://evil.example) **now**"


@pytest.fixture
def flagged_db(workspace: tuple[Settings, Engine]) -> Iterator[Engine]:
    """The drill outage acknowledged, one flagged X mention (legal) and one unflagged one."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    settings, engine = workspace
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                     actor=system_identity("test"))
    with Session(engine) as session:
        for i, (author, text, flagged) in enumerate([("@lex", HOSTILE, True),
                                                     ("@calm", "thanks for the update", False)]):
            session.add(Reaction(source=ReactionSource.x_mention, source_id=str(int(POST) + i),
                                 incident_id=bundle.incident_id, channel="x", locale="en",
                                 author=author, text=text, sentiment=Sentiment.negative,
                                 needs_human=flagged,
                                 reasons_json='["legal: lawyer"]' if flagged else "[]",
                                 received_at=utcnow()))
        session.commit()
    yield engine
    st.cache_resource.clear()
    st.cache_data.clear()


def test_pr_lead_sends_one_approved_reply_to_a_flagged_reaction(
        flagged_db: Engine, emulators: EmulatorPair) -> None:
    app = open_page(PAGE, Role.pr_lead, user_id="pat").run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Answer a flagged reaction" in texts(app)
    assert [o.split(" · ", 2)[2] for o in app.selectbox(key="reply_reaction").options] == [
        "@lex"]  # the flagged one only
    assert app.selectbox(key="reply_rule").options == ["eta"]
    assert HOSTILE not in texts(app)  # customer text only as data (the table)
    next(b for b in app.button if b.label == "Send reply").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert plain("Reply eta sent to reaction") in texts(app)
    assert "No flagged reaction left to answer." in texts(app)

    posts = [p for p in emulators.x.iter_received() if p["reply_to"]]
    assert [p["reply_to"] for p in posts] == [POST]
    assert posts[0]["text"].startswith("@lex ")
    with Session(flagged_db) as session:
        [reply] = session.exec(select(ReactionReply)).all()
        assert reply.author == "@lex"
        row = session.exec(select(Delivery).where(
            Delivery.key == reply_key(REF, "x_mention", "@lex"))).one()
        assert row.state == DeliveryState.sent and row.attempts == 1
        audits = [(a.actor, a.action) for a in session.exec(select(AuditEvent))]
    assert ("pat", "reply.planned") in audits and ("pat", "reply.sent") in audits

    # once per author per incident: refused before anything is written or sent
    with Session(flagged_db) as session:
        assert answerable_flagged(session, REF) == []
        reaction_id = session.exec(select(Reaction.id).where(Reaction.author == "@lex")).one()
    settings = Settings()
    with pytest.raises(ReplyRefused, match="answered once already") as refused:
        send_reply(flagged_db, settings, build_channels(settings), incident_ref=REF,
                   reaction_id=reaction_id or 0, rule_id="eta", actor="pat")
    assert refused.value.field == "reaction"
    assert len([p for p in emulators.x.iter_received() if p["reply_to"]]) == 1
    with Session(flagged_db) as session:
        assert len(session.exec(select(ReactionReply)).all()) == 1


def test_an_unflagged_reaction_or_an_unknown_reply_is_refused(flagged_db: Engine,
                                                              emulators: EmulatorPair) -> None:
    settings = Settings()
    channels = build_channels(settings)
    with Session(flagged_db) as session:
        ids = {r.author: r.id for r in session.exec(select(Reaction))}
    with pytest.raises(ReplyRefused, match="not flagged"):
        send_reply(flagged_db, settings, channels, incident_ref=REF,
                   reaction_id=ids["@calm"] or 0, rule_id="eta", actor="pat")
    with pytest.raises(ReplyRefused, match="has no reply 'refund'; replies: eta") as unknown:
        send_reply(flagged_db, settings, channels, incident_ref=REF,
                   reaction_id=ids["@lex"] or 0, rule_id="refund", actor="pat")
    assert unknown.value.field == "rule"
    with Session(flagged_db) as session:
        assert not session.exec(select(ReactionReply)).all()
    assert not [p for p in emulators.x.iter_received() if p["reply_to"]]


def test_an_admin_reads_the_flagged_reactions_but_cannot_reply(flagged_db: Engine) -> None:
    app = open_page(PAGE, Role.admin).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Need a person" in texts(app)
    assert "Answer a flagged reaction" not in texts(app)
    assert not [b for b in app.button if b.label == "Send reply"]


@pytest.mark.parametrize("role", [Role.approver, Role.support, Role.executive], ids=str)
def test_the_other_roles_cannot_open_the_page(flagged_db: Engine, role: Role) -> None:
    app = open_page(PAGE, role).run()
    assert [e.value for e in app.error] == [f"Your roles ({role.value}) do not allow this page."]
    assert not app.button
