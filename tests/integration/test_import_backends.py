"""The streamed recipient import on both backends (PostgreSQL writes through ``COPY``): a clean
file lands whole with fresh tokens, a refused one leaves nothing, duplicates across chunks and
against the table are named by line, ``--skip-invalid`` keeps the first of each."""

from __future__ import annotations

import uuid
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from crisiscomms.audience import import_indexes, importer
from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import init_db, make_engine
from tests.recipient_schema import recipient_defaults, recipient_indexes

pytestmark = pytest.mark.integration


def _count(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(Recipient)).one())


def test_a_clean_file_lands_whole_with_its_values(backend_engine: Engine,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    lines = [f"user{i:05d}@example.com,Zoë {i},fr-CA,America/Toronto,{'yes' if i % 4 else ''}"
             for i in range(15_000)]
    path.write_text("Email,Name,Locale,Time_Zone,Unsubscribed\n" + "\n".join(lines) + "\n")
    report = import_csv(backend_engine, path)
    assert report.written and report.rejected == []
    assert (report.imported, report.suppressed) == (15_000, 11_250)
    with Session(backend_engine) as s:
        row = s.exec(select(Recipient).where(col(Recipient.email) == "user00004@example.com")
                     ).one()
        tokens = s.exec(select(func.count(func.distinct(Recipient.unsubscribe_token)))).one()
        unconsented = s.exec(select(func.count()).select_from(Recipient)
                             .where(col(Recipient.consent).is_(False))).one()
    assert (row.name, row.locale, row.time_zone, row.consent) == (
        "Zoë 4", "fr-CA", "America/Toronto", True)
    assert row.created_at is not None and tokens == 15_000 and unconsented == 11_250


def test_a_large_import_stamps_every_row_with_its_time_and_leaves_the_schema(
        backend_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row of one import carries the same ``created_at``, the import's time (PostgreSQL's
    bulk ``COPY`` lends the column that default inside the transaction instead of sending it a
    million times), and the table's columns, defaults included, are as before."""
    monkeypatch.setattr(import_indexes, "MIN_LINES", 1_000)
    before = recipient_defaults(backend_engine)
    path = tmp_path / "r.csv"
    path.write_text("email\n" + "".join(f"user{i:05d}@example.com\n" for i in range(3_000)))
    started = utcnow()
    assert import_csv(backend_engine, path).imported == 3_000
    ended = utcnow()
    with Session(backend_engine) as s:
        stamps = set(s.exec(select(Recipient.created_at)).all())
    (stamp,) = stamps
    assert started <= stamp.replace(tzinfo=stamp.tzinfo or UTC) <= ended
    assert recipient_defaults(backend_engine) == before
    assert _count(backend_engine) == 3_000
    if backend_engine.dialect.name == "sqlite":  # its index builds sorted with helper threads
        with backend_engine.connect() as conn:  # the pool's one connection, set back
            assert conn.exec_driver_sql("PRAGMA threads").scalar_one() == 0


@pytest.mark.parametrize("bulk", [False, True], ids=["indexes kept", "indexes set aside"])
def test_duplicates_across_chunks_are_named_and_nothing_is_written(
        backend_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        bulk: bool) -> None:
    """Found by the unique index as each chunk is written, or when it is built again after a
    large import wrote every row (``import_indexes``): the same lines, the same report."""
    monkeypatch.setattr(import_indexes, "MIN_LINES", 1_000 if bulk else 10**9)
    before = recipient_indexes(backend_engine)
    seed = tmp_path / "seed.csv"
    seed.write_text("email\nold@example.com\n")
    assert import_csv(backend_engine, seed).imported == 1
    path = tmp_path / "r.csv"
    lines = [f"user{i:05d}@example.com" for i in range(21_000)]
    lines[20_500] = "user00003@example.com"  # line 20,502 repeats line 5 (two chunks back)
    lines[15_000] = "OLD@example.com"  # line 15,002, in the second chunk
    lines[15_001] = "user15000@example.com"  # line 15,003: its twin is line 15,002's slot: none
    path.write_text("email\n" + "\n".join(lines) + "\n")
    report = import_csv(backend_engine, path)
    assert report.rejected == [(15_002, "old@example.com is already a recipient"),
                               (20_502, "duplicate of line 5 (user00003@example.com)")]
    assert not report.written and _count(backend_engine) == 1
    report = import_csv(backend_engine, path, skip_invalid=True)
    assert report.written and report.imported == 20_998
    assert _count(backend_engine) == 20_999
    assert recipient_indexes(backend_engine) == before


def test_a_table_held_by_a_long_transaction_keeps_its_indexes(
        pg_cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: dropping an index needs the table's exclusive lock. While another
    transaction reads ``recipient`` the import waits at most ``LOCK_WAIT`` for it, then writes
    with the indexes in place (row conflicts found as it goes) instead of waiting, or making
    the reader wait; the reader is never refused."""
    monkeypatch.setattr(import_indexes, "MIN_LINES", 1_000)
    monkeypatch.setattr(import_indexes, "LOCK_WAIT", 0.2)
    pg_engine = make_engine(str(pg_cluster.create_database(  # type: ignore[attr-defined]
        f"t_{uuid.uuid4().hex[:12]}")))
    init_db(pg_engine)
    before = recipient_indexes(pg_engine)
    path = tmp_path / "r.csv"
    path.write_text("email\n" + "".join(f"user{i:05d}@example.com\n" for i in range(5_000)))
    dropped: list[dict[str, str]] = []

    def set_aside(conn: Connection) -> dict[str, str]:  # the real one, its answer kept
        statements = import_indexes.set_aside(conn)
        dropped.append(dict(statements))  # a copy: restore() empties the dict as it builds
        return statements

    monkeypatch.setattr(importer, "set_aside", set_aside)
    with pg_engine.connect() as reader, reader.begin():
        assert reader.exec_driver_sql("SELECT count(*) FROM recipient").scalar_one() == 0
        report = import_csv(pg_engine, path)  # the reader's transaction is still open
        assert dropped == [{}]  # the lock was not granted: nothing dropped
        assert reader.exec_driver_sql("SELECT count(*) FROM recipient").scalar_one() in (
            0, 5_000)
    assert (report.written, report.imported, report.rejected) == (True, 5_000, [])
    assert _count(pg_engine) == 5_000 and recipient_indexes(pg_engine) == before
    # no one holds the table now: the indexes are set aside (the usual wait for the lock)
    monkeypatch.setattr(import_indexes, "LOCK_WAIT", 2.0)
    import_csv(pg_engine, path)
    assert len(dropped) == 2 and import_indexes.EMAIL_INDEX in dropped[1]
    pg_engine.dispose()
