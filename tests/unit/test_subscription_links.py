"""Subscription links in the domain (real SQLite): confirmation tokens kept as their hash,
rotated on every resend, single use, expiring 48 h after they were sent; looking at a link
changes nothing; the mailbox behind an address for rate limits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from crisiscomms.audience import subscriptions as subs
from crisiscomms.audience.models import Recipient
from crisiscomms.core.database import init_db, make_engine

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'links.db'}")
    init_db(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_the_row_keeps_only_the_hash_of_the_link(session: Session) -> None:
    result = subs.subscribe(session, email="A@Example.org", now=T0)
    assert result.action == "pending" and result.confirm_token
    row = session.get(Recipient, result.recipient_id)
    assert row is not None
    assert row.confirm_token == hashlib.sha256(result.confirm_token.encode()).hexdigest()
    assert row.confirm_token != result.confirm_token and len(row.confirm_token) == 64
    with pytest.raises(subs.LinkError):  # the stored value is no link
        subs.pending_for(session, row.confirm_token, T0)


def test_a_resend_rotates_the_link_and_the_old_one_dies(session: Session) -> None:
    first = subs.subscribe(session, email="a@example.org", now=T0)
    assert subs.subscribe(session, email="a@example.org",
                          now=T0 + timedelta(minutes=5)).action == "ignored"
    again = subs.subscribe(session, email="a@example.org", now=T0 + timedelta(hours=2))
    assert again.action == "resent" and again.confirm_token not in (None, first.confirm_token)
    assert first.confirm_token and again.confirm_token
    with pytest.raises(subs.LinkError) as old:
        subs.confirm(session, first.confirm_token, T0 + timedelta(hours=2))
    assert old.value.reason == "unknown"
    row = subs.confirm(session, again.confirm_token, T0 + timedelta(hours=3))
    assert row.consent is True and row.confirm_token is None


def test_a_link_is_single_use_and_expires_after_48_hours(session: Session) -> None:
    result = subs.subscribe(session, email="b@example.org", now=T0)
    token = result.confirm_token
    assert token is not None
    with pytest.raises(subs.LinkError) as late:
        subs.confirm(session, token, T0 + subs.CONFIRM_TTL + timedelta(seconds=1))
    assert late.value.reason == "expired" and late.value.field == "token"
    row = session.get(Recipient, result.recipient_id)
    assert row is not None and row.consent is False  # nothing changed
    assert subs.confirm(session, token, T0 + subs.CONFIRM_TTL).consent is True
    with pytest.raises(subs.LinkError) as used:
        subs.confirm(session, token, T0 + subs.CONFIRM_TTL)
    assert used.value.reason == "unknown"


def test_looking_at_a_link_changes_nothing(session: Session) -> None:
    result = subs.subscribe(session, email="c@example.org", now=T0)
    assert result.confirm_token is not None
    for _ in range(3):
        assert subs.pending_for(session, result.confirm_token, T0).consent is False
    row = session.get(Recipient, result.recipient_id)
    assert row is not None and row.unsubscribe_token is not None
    row.consent = True
    for _ in range(3):
        found = subs.subscriber_for(session, row.unsubscribe_token)
        assert found is not None and found.consent is True
    assert subs.subscriber_for(session, "x" * 500) is None
    for bad in ("", "x" * 500):
        with pytest.raises(subs.LinkError):
            subs.pending_for(session, bad, T0)


def test_unsubscribing_keeps_working_and_spends_a_pending_confirmation(session: Session) -> None:
    result = subs.subscribe(session, email="d@example.org", now=T0)
    row = session.get(Recipient, result.recipient_id)
    assert row is not None and row.unsubscribe_token and result.confirm_token
    for _ in range(2):  # idempotent: the link in every email keeps working (RFC 8058)
        gone = subs.unsubscribe(session, row.unsubscribe_token)
        assert gone is not None and gone.consent is False
    with pytest.raises(subs.LinkError):
        subs.confirm(session, result.confirm_token, T0)
    assert subs.unsubscribe(session, "nonsense") is None


@pytest.mark.parametrize(("address", "mailbox"), [
    ("name@example.org", "name@example.org"),
    ("Name+news@Example.ORG", "name@example.org"),
    ("name+1+2@example.org", "name@example.org"),
    ("NAME@EXAMPLE.ORG", "name@example.org"),
    ("first.last@example.org", "first.last@example.org"),
])
def test_the_mailbox_folds_tags_and_case(address: str, mailbox: str) -> None:
    assert subs.mailbox_key(subs.normalise_email(address)) == mailbox
