"""``store_reactions`` on both backends (SQLite and a throwaway PostgreSQL): a batch is stored
once per (source, source_id), linked from our batch key, provider id, incident reference or
recipient address, text kept exactly as sent; a CSAT rating given again replaces the first."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.audience.models import Recipient
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import Incident, IncidentStatus, Message
from crisiscomms.playbook.listening import Listening
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment
from crisiscomms.reactions.service import ReactionIn, store_reactions
from crisiscomms.reactions.triage import Triager

pytestmark = pytest.mark.integration
HOSTILE = "Still broken\x00\x1b[31m <img src=x onerror=alert(1)> \u202eevil 🔥 火傷 مرحبا"


def seed(engine: Engine) -> tuple[int, int, int, str]:
    with Session(engine) as s:
        old = Incident(ref="INC-OLD", playbook="outage", title="old", severity="minor",
                       status=IncidentStatus.resolved)
        inc = Incident(ref="INC-STORE-1", playbook="outage", title="t", severity="major")
        s.add_all([old, inc])
        s.flush()
        assert inc.id is not None
        msg = Message(incident_id=inc.id, stage="acknowledge", facts_version=1, channel="email",
                      locale="fr", parts_json="{}", content_hash="h", template_hashes_json="{}")
        s.add(msg)
        s.add(Recipient(email="ann@example.com", locale="ja"))
        s.flush()
        assert msg.id is not None
        row = Delivery(key="k" * 40, incident_id=inc.id, message_id=msg.id, channel="email",
                       locale="fr", batch_no=0, recipient_ids="1", recipient_count=1,
                       state=DeliveryState.sent, provider_id="XMSGID123")
        s.add(row)
        s.commit()
        assert row.id is not None
        return inc.id, msg.id, row.id, row.key


def test_a_batch_is_stored_once_and_linked(backend_engine: Engine) -> None:
    incident_id, message_id, delivery_id, key = seed(backend_engine)
    triager = Triager.for_playbook(Listening(cues={"en": {"safety": ("burn",)}},
                                             vip=("@big",)))
    items = [
        ReactionIn(ReactionSource.email_reply, "<a@x>", "ann@example.com", HOSTILE,
                   delivery_key=key, recipient_address="ANN@example.com"),
        ReactionIn(ReactionSource.email_reply, "<b@x>", "bob@example.com", "a burn!",
                   provider_ids=("nope", "XMSGID123")),
        ReactionIn(ReactionSource.ticket, "zendesk:1:2", "@big", "hello",
                   incident_refs=("nothing-here", "inc-store-1")),
        ReactionIn(ReactionSource.ticket, "zendesk:1:3", "c@example.com", "x",
                   open_incident=True),
        ReactionIn(ReactionSource.ticket, "zendesk:1:3", "c@example.com", "dup in batch"),
        ReactionIn(ReactionSource.x_mention, "999", "@nobody", "unlinked"),
    ]
    with Session(backend_engine) as s:
        first = store_reactions(s, items, triager=triager)
    assert (first.received, first.stored, first.duplicates) == (6, 5, 1)
    # flagged: the hostile reply (built-in cues: "still broken", 火傷), the burn, the VIP
    assert first.needs_human == 3 and first.linked == 2
    with Session(backend_engine) as s:
        again = store_reactions(s, items, triager=triager)
    assert (again.stored, again.duplicates) == (0, 6)
    with Session(backend_engine) as s:
        rows = {r.source_id: r for r in s.execute(select(Reaction)).scalars()}
        ann_id = s.execute(select(col(Recipient.id))).scalar_one()
    assert len(rows) == 5
    a = rows["<a@x>"]
    assert a.text == HOSTILE.replace("\x00", "\ufffd")  # NUL: PostgreSQL text cannot hold it
    assert (a.message_id, a.delivery_id, a.incident_id, a.locale, a.channel,
            a.recipient_id) == (message_id, delivery_id, incident_id, "fr", "email", ann_id)
    b = rows["<b@x>"]
    assert b.delivery_id == delivery_id and b.needs_human
    assert json.loads(b.reasons_json) == ["safety: burn"]
    assert rows["zendesk:1:2"].incident_id == incident_id and rows["zendesk:1:2"].needs_human
    assert rows["zendesk:1:3"].incident_id == incident_id  # the open one, not INC-OLD
    assert rows["zendesk:1:3"].text == "x"
    assert rows["999"].incident_id is None and rows["999"].channel == "x"


def test_replace_overwrites_a_rating(backend_engine: Engine) -> None:
    incident_id, message_id, _, _ = seed(backend_engine)

    def rate(rating: int, sentiment: Sentiment) -> None:
        item = ReactionIn(ReactionSource.csat, f"{incident_id}:1", "ann@example.com",
                          f"rated {rating}", rating=rating, incident_id=incident_id,
                          message_id=message_id, recipient_id=1, sentiment=sentiment)
        with Session(backend_engine) as s:
            assert store_reactions(s, [item], triager=Triager(), replace=True).stored == 1

    rate(5, Sentiment.positive)
    rate(1, Sentiment.negative)
    with Session(backend_engine) as s:
        row = s.execute(select(Reaction)).scalar_one()
    assert (row.rating, row.sentiment, row.text, row.locale) == (1, "negative", "rated 1", "fr")


def test_event_batches_on_both_backends(backend_engine: Engine) -> None:
    from crisiscomms.delivery.models import DeliveryEvent
    from crisiscomms.reactions.sources.sendgrid_events import parse_events, record_events

    _, _, delivery_id, key = seed(backend_engine)
    with Session(backend_engine) as s:
        s.get(Delivery, delivery_id).state = DeliveryState.unconfirmed  # type: ignore[union-attr]
        s.commit()
        rid = s.execute(select(col(Recipient.id))).scalar_one()
    events = [{"email": "ann@example.com", "event": name, "timestamp": 1795426800,
               "sg_event_id": f"e-{i}", "crisiscomms_key": key,
               "crisiscomms_recipient": str(rid), "reason": "550\x00 no such user"}
              for i, name in enumerate(["processed", "delivered", "bounce"] * 400)]
    body = json.dumps(events).encode()
    with Session(backend_engine) as s:
        first = record_events(s, parse_events(body))
    assert (first.stored, first.confirmed, first.suppressed) == (1200, 1, 1)
    with Session(backend_engine) as s:
        again = record_events(s, parse_events(body))
        recipient = s.get(Recipient, rid)
        state = s.get(Delivery, delivery_id).state  # type: ignore[union-attr]
        linked = s.execute(select(col(DeliveryEvent.delivery_id)).distinct()).scalars().all()
    assert (again.stored, again.duplicates, again.confirmed, again.suppressed) == (0, 1200, 0, 0)
    assert recipient is not None and (recipient.consent, recipient.suppression) == (False,
                                                                                   "bounce")
    assert state == DeliveryState.sent and linked == [delivery_id]


def test_an_event_outrunning_the_mail_send_answer_names_the_message(
        backend_engine: Engine) -> None:
    """SendGrid (and its emulator) can post ``processed`` before our Mail Send request has its
    answer: the row still ``sending`` becomes ``sent`` with the message id of
    ``sg_message_id``, so replies and later events find the batch."""
    from crisiscomms.reactions.sources.sendgrid_events import parse_events, record_events

    _, _, delivery_id, key = seed(backend_engine)
    with Session(backend_engine) as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        row.state, row.provider_id = DeliveryState.sending, None
        s.commit()
    body = json.dumps([{"email": "ann@example.com", "event": "processed",
                        "timestamp": 1795426800, "sg_event_id": "p-1", "crisiscomms_key": key,
                        "sg_message_id": "W86EgYT6SQKk0lRflfLRsA.filterdrecv-5645d9c87f-2"}])
    with Session(backend_engine) as s:
        assert record_events(s, parse_events(body.encode())).confirmed == 1
        row = s.get(Delivery, delivery_id)
        assert row is not None
        assert (row.state, row.provider_id) == (DeliveryState.sent, "W86EgYT6SQKk0lRflfLRsA")
