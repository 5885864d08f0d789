"""The per-minute delivery event rollup equals a GROUP BY over the raw events, whatever the
batches: replays (same event id again, in one batch or a later one), events of several
incidents and channels' keys, events no ledger row claims (not rolled up), minutes crossed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from crisiscomms.delivery.models import Delivery, DeliveryEvent, DeliveryEventRollup
from crisiscomms.delivery.rollup import minute_of
from crisiscomms.incident.models import Incident, Message
from crisiscomms.reactions.sources.sendgrid_events import SendGridEvent, record_events

START = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)
KEYS = ("batch-a", "batch-b", "batch-c", "unknown-key")
EVENTS = ("processed", "delivered", "open", "bounce", "click")


def ledger(engine: Engine) -> None:
    """Two incidents; batches a and b of the first, c of the second."""
    with Session(engine) as session:
        for n, ref in enumerate(("ROLL-1", "ROLL-2"), start=1):
            session.add(Incident(id=n, ref=ref, playbook="outage", title=ref, severity="minor"))
            session.add(Message(id=n, incident_id=n, stage="acknowledge", facts_version=1,
                                channel="email", locale="en", parts_json="{}", content_hash="h",
                                template_hashes_json="{}"))
        session.flush()
        for n, (key, incident) in enumerate((("batch-a", 1), ("batch-b", 1), ("batch-c", 2))):
            session.add(Delivery(key=key, incident_id=incident, message_id=incident,
                                 channel="email", locale="en", batch_no=n, recipient_count=3,
                                 state="sent"))
        session.commit()


event = st.builds(
    lambda i, kind, key, seconds: SendGridEvent(
        event_id=f"ev-{i}", event=kind, email="a@example.com",
        occurred_at=START + timedelta(seconds=seconds), key=key, recipient_id=1),
    st.integers(0, 40), st.sampled_from(EVENTS), st.sampled_from(KEYS), st.integers(0, 600))


def raw_group_by(session: Session) -> Counter[tuple[int, str, str, datetime]]:
    counts: Counter[tuple[int, str, str, datetime]] = Counter()
    rows = session.execute(select(col(DeliveryEvent.incident_id), col(DeliveryEvent.channel),
                                  col(DeliveryEvent.event), col(DeliveryEvent.occurred_at))
                           .where(col(DeliveryEvent.incident_id).is_not(None)))
    for iid, channel, kind, at in rows:
        counts[(int(iid), str(channel), str(kind), minute_of(at))] += 1
    return counts


def rollup(session: Session) -> Counter[tuple[int, str, str, datetime]]:
    rows = session.execute(select(col(DeliveryEventRollup.incident_id),
                                  col(DeliveryEventRollup.channel),
                                  col(DeliveryEventRollup.event),
                                  col(DeliveryEventRollup.minute),
                                  col(DeliveryEventRollup.count)))
    return Counter({(int(i), str(c), str(e), minute_of(m)): int(n) for i, c, e, m, n in rows})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(event, max_size=25), max_size=4))
def test_the_rollup_equals_the_group_by_over_raw_events(
        engine: Engine, batches: list[list[SendGridEvent]]) -> None:
    with Session(engine) as session:  # one migrated database; each example starts empty
        for table in (DeliveryEventRollup, DeliveryEvent):
            session.execute(delete(table))
        session.commit()
        if session.get(Incident, 1) is None:
            ledger(engine)
        for batch in batches:
            record_events(session, batch)
        assert rollup(session) == raw_group_by(session)
        # and the rollup never counts an event twice: its total is the linked events'
        linked = session.execute(select(func.count()).select_from(DeliveryEvent).where(
            col(DeliveryEvent.incident_id).is_not(None))).scalar_one()
        assert sum(rollup(session).values()) == linked


def test_a_replayed_batch_adds_nothing(backend_engine: Engine) -> None:
    """On SQLite and PostgreSQL alike (the upsert is each dialect's own)."""
    engine = backend_engine
    ledger(engine)
    batch = [SendGridEvent(f"ev-{i}", "delivered", "a@example.com",
                           START + timedelta(seconds=50 * i), key="batch-a", recipient_id=i)
             for i in range(4)]
    with Session(engine) as session:
        record_events(session, batch)
        record_events(session, batch)
        record_events(session, [*batch[:1], SendGridEvent("ev-new", "open", "a@example.com",
                                                          START, key="batch-c")])
        assert rollup(session) == Counter({
            (1, "email", "delivered", START): 2,  # 0 s and 50 s
            (1, "email", "delivered", datetime(2026, 11, 23, 9, 41, tzinfo=UTC)): 1,  # 100 s
            (1, "email", "delivered", datetime(2026, 11, 23, 9, 42, tzinfo=UTC)): 1,  # 150 s
            (2, "email", "open", START): 1,
        })
