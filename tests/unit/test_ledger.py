"""The ledger: bulk planning in deterministic batches, idempotent re-planning, single claims."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.audience.models import Recipient
from crisiscomms.audience.recipients import PRESS_LIST, insert_recipients
from crisiscomms.delivery.contract import CUSTOMER_LIST, DeliveryResult
from crisiscomms.delivery.ledger import (
    channel_counts,
    claim,
    confirm_by_key,
    decode_ids,
    plan_messages,
    record,
)
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import Incident, Message
from crisiscomms.testing.audiences import DRILL_PRESS_DOMAIN, drill_recipients


@pytest.fixture
def engine(backend_engine: Engine) -> Engine:
    """Every ledger test runs on SQLite and on PostgreSQL."""
    return backend_engine


def seed(engine: Engine, recipients: int, locales: tuple[str, ...] = ("en",)) -> list[Message]:
    with Session(engine, expire_on_commit=False) as s:
        insert_recipients(s, drill_recipients(recipients, locales=locales))
        inc = Incident(ref="INC-1", playbook="outage", title="t", severity="major")
        s.add(inc)
        s.flush()
        assert inc.id is not None
        msgs = [Message(incident_id=inc.id, stage="acknowledge", facts_version=1, channel=ch,
                        locale=loc, parts_json="{}", content_hash=f"h-{ch}-{loc}",
                        template_hashes_json="{}")
                for ch, loc in [("x", "en"), ("status_page", "en"),
                                *[("email", loc) for loc in locales]]]
        s.add_all(msgs)
        s.commit()
        return msgs


def plan(engine: Engine, msgs: list[Message], locales: tuple[str, ...] = ("en",)) -> int:
    with Session(engine) as s:
        result = plan_messages(s, incident_ref="INC-1", facts_hash="f" * 64, messages=msgs,
                               audiences={"email": CUSTOMER_LIST}, locales=locales,
                               default_locale="en", batch_size=1000)
        s.commit()
        return result.new_rows


def test_plans_deterministic_batches_in_bulk(engine: Engine) -> None:
    msgs = seed(engine, 2500)
    assert plan(engine, msgs) == 5  # 3 email batches + x + status page
    with Session(engine) as s:
        rows = s.exec(select(Delivery).where(Delivery.channel == "email")
                      .order_by(Delivery.batch_no)).all()
        assert [r.recipient_count for r in rows] == [1000, 1000, 500]
        ids = [i for r in rows for i in decode_ids(r.recipient_ids)]
        assert ids == sorted(ids) and len(set(ids)) == 2500
        assert len({r.key for r in rows}) == 3
        assert all(r.state == DeliveryState.planned for r in rows)


def test_each_addressed_channel_reaches_its_own_list(engine: Engine) -> None:
    """The customer list is everyone on no list; a named list (press) only its members; a
    channel not in ``audiences`` is a broadcast: one row, nobody addressed."""
    msgs = seed(engine, 30)
    with Session(engine, expire_on_commit=False) as s:
        insert_recipients(s, drill_recipients(4, domain=DRILL_PRESS_DOMAIN, lists=PRESS_LIST,
                                              prefix="press"))
        press = Message(incident_id=msgs[0].incident_id, stage="acknowledge", facts_version=1,
                        channel="press", locale="en", parts_json="{}", content_hash="h-press",
                        template_hashes_json="{}")
        s.add(press)
        s.commit()
        result = plan_messages(s, incident_ref="INC-1", facts_hash="f" * 64,
                               messages=[*msgs, press], audiences={"email": CUSTOMER_LIST,
                                                                  "press": PRESS_LIST},
                               locales=("en",), default_locale="en", batch_size=1000)
        s.commit()
        assert result.recipients == {"email": 30, "press": 4}
        counts = channel_counts(s)
        assert counts["press"]["planned"] == 4 and counts["email"]["planned"] == 30
        assert counts["x"]["planned"] == 1 and counts["status_page"]["planned"] == 1
        emails = {r.id: r.email for r in s.exec(select(Recipient))}
        row = s.exec(select(Delivery).where(Delivery.channel == "press")).one()
        assert all(emails[i].endswith(DRILL_PRESS_DOMAIN) for i in decode_ids(row.recipient_ids))


def test_replanning_adds_nothing(engine: Engine) -> None:
    msgs = seed(engine, 1200)
    assert plan(engine, msgs) == 4
    assert plan(engine, msgs) == 0
    with Session(engine) as s:
        assert len(s.exec(select(Delivery)).all()) == 4


def test_keys_are_deterministic_across_databases(engine: Engine, tmp_path) -> None:
    from crisiscomms.core.database import init_db, make_engine

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    init_db(other)
    keys = []
    for eng in (engine, other):
        plan(eng, seed(eng, 1500))
        with Session(eng) as s:
            keys.append(sorted(s.exec(select(Delivery.key)).all()))
    assert keys[0] == keys[1]


def test_recipients_without_consent_are_not_planned(engine: Engine) -> None:
    msgs = seed(engine, 10)
    with Session(engine) as s:
        r = s.exec(select(Recipient).where(Recipient.id == 3)).one()
        r.consent = False
        s.add(r)
        s.commit()
    plan(engine, msgs)
    with Session(engine) as s:
        row = s.exec(select(Delivery).where(Delivery.channel == "email")).one()
        assert 3 not in decode_ids(row.recipient_ids) and row.recipient_count == 9


def test_locales_partition_batches(engine: Engine) -> None:
    locales = ("en", "es")
    msgs = seed(engine, 10, locales=locales)
    plan(engine, msgs, locales)
    with Session(engine) as s:
        rows = s.exec(select(Delivery).where(Delivery.channel == "email")).all()
        assert sorted((r.locale, r.recipient_count) for r in rows) == [("en", 5), ("es", 5)]


def test_a_row_is_claimed_once_and_recorded_once(engine: Engine) -> None:
    plan(engine, seed(engine, 5))
    with Session(engine) as s:
        ids = list(s.exec(select(Delivery.id)).all())
        first = claim(s, ids)
        assert sorted(first) == sorted(ids)
        assert claim(s, ids) == []  # already sending: nobody else gets it
        record(s, first[0], DeliveryResult.sent("p-1"), attempts=1)
        record(s, first[1], DeliveryResult.permanent("bad address"), attempts=1)
        record(s, first[0], DeliveryResult.permanent("late"), attempts=1)  # no second record
        rows = {r.id: r for r in s.exec(select(Delivery)).all()}
        assert rows[first[0]].state == DeliveryState.sent
        assert rows[first[0]].provider_id == "p-1"
        assert rows[first[1]].state == DeliveryState.failed
        assert rows[first[1]].error == "bad address"


def test_the_providers_word_before_our_answer_keeps_the_provider_id(engine: Engine) -> None:
    """SendGrid's Event Webhook can say ``processed`` for a batch before its Mail Send answer
    reaches us: the row is confirmed while still ``sending``. The answer that follows is the
    same send, recorded once, and its message id is kept (replies and events find the batch
    by it)."""
    plan(engine, seed(engine, 5))
    with Session(engine) as s:
        ids = list(s.exec(select(Delivery.id)).all())
        first = claim(s, ids)
        row = s.get(Delivery, first[0])
        assert row is not None
        assert confirm_by_key(s, row.key) is True  # the webhook, while the request is open
        record(s, first[0], DeliveryResult.sent("msg-1"), attempts=1)
        record(s, first[0], DeliveryResult.sent("msg-2"), attempts=1)  # never a second record
        s.expire_all()
        row = s.get(Delivery, first[0])
        assert row is not None
        assert (row.state, row.provider_id, row.attempts) == (DeliveryState.sent, "msg-1", 1)
        assert confirm_by_key(s, row.key, provider_id="other") is False  # settled: unchanged
        s.expire_all()
        assert s.get(Delivery, first[0]).provider_id == "msg-1"  # type: ignore[union-attr]


def test_channel_counts_sum_recipients_in_sql(engine: Engine) -> None:
    plan(engine, seed(engine, 1500))
    with Session(engine) as s:
        email_ids = list(s.exec(select(Delivery.id).where(Delivery.channel == "email")).all())
        claimed = claim(s, email_ids[:1])
        record(s, claimed[0], DeliveryResult.sent(), attempts=1)
        counts = channel_counts(s)
    assert counts["email"] == {"planned": 500, "sending": 0, "sent": 1000, "failed": 0,
                               "deferred": 0, "unconfirmed": 0}
    assert counts["x"]["planned"] == 1


def test_concurrent_claims_never_overlap(engine: Engine) -> None:
    """Two claimers racing for the same rows (SKIP LOCKED on PostgreSQL) split them."""
    import threading

    msgs = seed(engine, 20_000)
    plan(engine, msgs)
    with Session(engine) as s:
        ids = [d.id for d in s.exec(select(Delivery)).all()]
    got: list[list[int]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        with Session(engine) as s:
            barrier.wait()
            got.append(claim(s, ids))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for g in got for i in g]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))


def test_record_many_failures_and_requeue(engine: Engine) -> None:
    from crisiscomms.delivery.ledger import failures, record_many, requeue

    msgs = seed(engine, 3000)
    plan(engine, msgs)
    with Session(engine) as s:
        ids = [d.id for d in s.exec(select(Delivery).where(Delivery.channel == "email")
                                    .order_by(Delivery.id)).all()]
        claimed = claim(s, ids)
        record_many(s, [(claimed[0], DeliveryResult.sent("m1"), 1),
                        (claimed[1], DeliveryResult.permanent("SendGrid answered 400: bad"), 1),
                        (claimed[2], DeliveryResult.unknown("cannot confirm"), 2)])
        rows = {f.state: f for f in failures(s)}
        assert rows["failed"].error == "SendGrid answered 400: bad"
        assert rows["unconfirmed"].attempts == 2
        inc = s.exec(select(Incident)).one()
        assert requeue(s, inc.id) == 1000  # failed only
        assert channel_counts(s)["email"]["unconfirmed"] == 1000
        assert requeue(s, inc.id, states=[DeliveryState.unconfirmed]) == 1000
        assert channel_counts(s)["email"]["planned"] == 2000


def test_a_bulk_insert_refreshes_postgresql_statistics(pg_cluster: object) -> None:
    """Without fresh statistics PostgreSQL plans every audience chunk as a full scan + sort."""
    import uuid

    from sqlalchemy import text

    from crisiscomms.audience.recipients import ANALYZE_AFTER
    from crisiscomms.core.database import init_db, make_engine

    url = pg_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    eng = make_engine(str(url))
    init_db(eng)
    with Session(eng) as s:
        insert_recipients(s, drill_recipients(ANALYZE_AFTER))
        s.commit()
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'recipient'"))
        assert rows.scalar_one() >= ANALYZE_AFTER * 0.9
    eng.dispose()
