"""Revision ``b6ef20440830`` on both backends: ``recipient.confirm_token`` unique through a
partial index, ``ix_recipient_phone`` partial, and on PostgreSQL ``email`` and
``unsubscribe_token`` bytewise (``COLLATE "C"``).

Alembic's comparison (the guard in ``test_migrations.py``) sees neither an index's ``WHERE`` nor
a missing collation, so the migrated schema is compared here with the one the models create. The
lookups the code runs are explained on each backend, to show that the partial and re-collated
indexes still serve them (a partial index is used only when the query implies its predicate; an
index is used only under the collation of the comparison)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col, select, update

from crisiscomms.audience.import_indexes import restore, set_aside
from crisiscomms.audience.models import Recipient
from crisiscomms.core.database import current_revisions, init_db, make_engine, migrate

pytestmark = pytest.mark.integration

BEFORE, REVISION = "d14f3a6e9c20", "b6ef20440830"
ROWS = 3000
"""Enough that PostgreSQL's planner prefers an index to reading the table (a few pages)."""


@pytest.fixture
def fresh(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def models_engine(db_url: str, request: pytest.FixtureRequest,
                  tmp_path: Path) -> Iterator[Engine]:
    """Another empty database of the same backend, where the models create ``recipient``."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'models.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = str(cluster.create_database(f"{sa.make_url(db_url).database}_models"))
    eng = make_engine(url)
    Recipient.__table__.create(eng)  # type: ignore[attr-defined]
    yield eng
    eng.dispose()


def recipient_rows(n: int = ROWS) -> list[dict[str, Any]]:
    """Ids with gaps; every 100th has a number, every 150th a pending confirmation."""
    return [{"id": 3 * i + 1, "email": f"r{i}@example.org", "u": f"unsub-{i:06d}",
             "c": f"{i:064x}" if i % 150 == 0 else None,
             "p": f"+1415555{i:04d}" if i % 100 == 0 else None} for i in range(n)]


def insert_recipients(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO recipient (id, email, locale, time_zone, consent, created_at,"
            " unsubscribe_token, confirm_token, phone) VALUES (:id, :email, 'en', 'UTC', true,"
            " '2026-01-01 00:00:00+00:00', :u, :c, :p)"), rows)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT setval('recipient_id_seq', (SELECT max(id) FROM recipient))")
        conn.exec_driver_sql("ANALYZE recipient")


def table_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT * FROM recipient ORDER BY id"))]


def indexes(engine: Engine) -> dict[str, str]:
    """Each index on ``recipient`` (by name) as the database states it."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.exec_driver_sql(
                "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'index' AND "
                "tbl_name = 'recipient'")
        else:
            found = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'recipient'")
        return {str(name): str(sql) for name, sql in found}


def schema(engine: Engine) -> dict[str, object]:
    """All of ``recipient``'s definition that a migration could change, as the database states
    it (SQLite: its stored ``CREATE`` statements; PostgreSQL: the catalogs)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return {
                "master": sorted(tuple(r) for r in conn.exec_driver_sql(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'recipient'")),
                "foreign_keys": conn.exec_driver_sql(
                    "PRAGMA foreign_key_list(recipient)").all(),
            }
        return {
            "indexes": indexes(engine),
            "constraints": sorted(tuple(r) for r in conn.exec_driver_sql(
                "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'recipient'::regclass")),
            "columns": sorted(tuple(r) for r in conn.exec_driver_sql(
                "SELECT column_name, data_type, character_maximum_length, is_nullable, "
                "collation_name, column_default FROM information_schema.columns "
                "WHERE table_name = 'recipient'")),
        }


def collations(engine: Engine) -> dict[str, str | None]:
    """PostgreSQL: each column's own collation (None: the database's); SQLite: the collation
    clauses of the stored ``CREATE TABLE`` (none: binary)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                                       "name = 'recipient'").scalar_one()
            return dict.fromkeys(re.findall(r"COLLATE\s+\S+", str(sql), re.I))
        return {str(name): collation for name, collation in conn.exec_driver_sql(
            "SELECT column_name, collation_name FROM information_schema.columns "
            "WHERE table_name = 'recipient'")}


def plan(conn: Connection, statement: sa.Executable) -> str:
    """The backend's plan for ``statement``, bound as the application binds it (SQLite:
    ``EXPLAIN QUERY PLAN``; PostgreSQL: ``EXPLAIN`` of the psycopg statement, ``$n`` parameters
    with SQLAlchemy's ``::VARCHAR`` casts)."""
    compiled = statement.compile(dialect=conn.dialect)
    if conn.dialect.name == "sqlite":
        params: Any = tuple(compiled.params[k] for k in compiled.positiontup or ())
        found = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
        return "\n".join(str(row[-1]) for row in found)
    found = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).all()
    return "\n".join(str(row[0]) for row in found)


def generic_plan(conn: Connection, statement: sa.Executable) -> str:
    """PostgreSQL: the plan of ``statement`` prepared and planned for any parameter value (what
    a prepared statement runs after a few executions): a partial index must then be implied by
    ``column = $1`` itself, whatever the value."""
    compiled = statement.compile(dialect=conn.dialect)
    names = list(compiled.params)
    sql = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", str(compiled))
    conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql(f"PREPARE lookup AS {sql}")
    values = ", ".join("NULL" if compiled.params[n] is None else f"'{compiled.params[n]}'"
                       for n in names)  # this module's values hold no quote
    try:
        return "\n".join(str(r[0]) for r in conn.exec_driver_sql(
            f"EXPLAIN EXECUTE lookup({values})"))
    finally:
        conn.exec_driver_sql("DEALLOCATE lookup")
        conn.exec_driver_sql("RESET plan_cache_mode")


def duplicate_confirm_token(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO recipient (email, locale, time_zone, consent, created_at,"
            " unsubscribe_token, confirm_token) VALUES ('dup@example.org', 'en', 'UTC', false,"
            " '2026-01-01 00:00:00+00:00', 'dup-unsub', :c)"), {"c": f"{0:064x}"})


# -- the schema -----------------------------------------------------------------------------------


def test_the_migrated_recipient_table_is_the_models_one(fresh: Engine,
                                                        models_engine: Engine) -> None:
    init_db(fresh)
    assert indexes(fresh) == indexes(models_engine)
    assert collations(fresh) == collations(models_engine)
    unique = [sorted(u["column_names"]) for u in sa.inspect(fresh).get_unique_constraints(
        "recipient")]
    assert unique == [sorted(u["column_names"]) for u in sa.inspect(
        models_engine).get_unique_constraints("recipient")] == []
    partial = {name: sql for name, sql in indexes(fresh).items() if "WHERE" in sql}
    assert set(partial) == {"ix_recipient_confirm_token", "ix_recipient_phone"}
    assert "confirm_token IS NOT NULL" in partial["ix_recipient_confirm_token"]
    assert "phone IS NOT NULL" in partial["ix_recipient_phone"]
    if fresh.dialect.name == "postgresql":
        assert {k: v for k, v in collations(fresh).items() if v} == {
            "email": "C", "unsubscribe_token": "C"}
        with fresh.connect() as conn:  # the unique indexes were built again under "C"
            index_collations = dict(conn.exec_driver_sql(
                "SELECT i.indexrelid::regclass::text, c.collname FROM pg_index AS i JOIN "
                "pg_collation AS c ON c.oid = i.indcollation[0] WHERE i.indrelid = "
                "'recipient'::regclass AND i.indkey[0] <> 0").all())
        assert index_collations["ix_recipient_email"] == "C"
        assert index_collations["ix_recipient_unsubscribe_token"] == "C"
    else:
        assert collations(fresh) == {}


# -- upgrade and downgrade with rows ---------------------------------------------------------------


def test_upgrade_keeps_the_rows_and_downgrade_restores_the_schema(fresh: Engine) -> None:
    migrate(fresh, BEFORE)
    previous = schema(fresh)
    assert [u["column_names"] for u in sa.inspect(fresh).get_unique_constraints("recipient")] \
        == [["confirm_token"]]
    insert_recipients(fresh, recipient_rows())
    rows = table_rows(fresh)
    assert sum(1 for r in recipient_rows() if r["c"]) == 20

    migrate(fresh, REVISION)
    assert current_revisions(fresh) == {REVISION}
    assert table_rows(fresh) == rows  # ids, tokens, numbers: all kept
    upgraded = schema(fresh)
    assert upgraded != previous
    with pytest.raises(sa.exc.IntegrityError):  # the partial index still refuses a repeat
        duplicate_confirm_token(fresh)

    migrate(fresh, BEFORE, downgrade=True)
    assert current_revisions(fresh) == {BEFORE}
    assert schema(fresh) == previous
    assert table_rows(fresh) == rows
    with pytest.raises(sa.exc.IntegrityError):  # the constraint is back
        duplicate_confirm_token(fresh)

    migrate(fresh, REVISION)
    assert schema(fresh) == upgraded and table_rows(fresh) == rows


# -- the rules at head -------------------------------------------------------------------------


def test_non_null_confirm_tokens_stay_unique_and_nulls_are_many(fresh: Engine) -> None:
    init_db(fresh)
    insert_recipients(fresh, recipient_rows(500))  # 496 NULL confirm tokens, 4 set
    with pytest.raises(sa.exc.IntegrityError):
        duplicate_confirm_token(fresh)
    with fresh.begin() as conn:  # a spent token frees its value (NULL is not indexed)
        conn.execute(sa.text("UPDATE recipient SET confirm_token = NULL WHERE id = 1"))
    duplicate_confirm_token(fresh)
    with fresh.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM recipient WHERE confirm_token IS NULL")).scalar_one() == 497
        # bytewise, as before on both backends: the stored address matches, another case not
        assert conn.execute(sa.text("SELECT email FROM recipient WHERE email IN "
                                    "('R1@example.org', 'r1@example.org')")).scalars().all() \
            == ["r1@example.org"]
    with pytest.raises(sa.exc.IntegrityError), fresh.begin() as conn:  # email: still unique
        conn.execute(sa.text(
            "INSERT INTO recipient (email, locale, time_zone, consent, created_at)"
            " VALUES ('r2@example.org', 'en', 'UTC', true, '2026-01-01 00:00:00+00:00')"))


LOOKUPS: dict[str, tuple[str, sa.Executable]] = {
    # audience/subscriptions.py pending_for / confirm
    "confirm": ("ix_recipient_confirm_token",
                select(Recipient).where(col(Recipient.confirm_token) == f"{150:064x}")),
    # audience/subscriptions.py subscribe
    "email": ("ix_recipient_email",
              select(Recipient).where(col(Recipient.email) == "r7@example.org")),
    # audience/subscriptions.py subscriber_for / unsubscribe
    "unsubscribe": ("ix_recipient_unsubscribe_token",
                    select(Recipient).where(col(Recipient.unsubscribe_token) == "unsub-000007")),
    # delivery/sms_events.py recipient_locale and opt_out (a STOP reply)
    "phone": ("ix_recipient_phone",
              select(col(Recipient.locale)).where(col(Recipient.phone) == "+14155550100")
              .order_by(col(Recipient.id)).limit(1)),
    "stop": ("ix_recipient_phone",
             update(Recipient).where(col(Recipient.phone) == "+14155550100",
                                     col(Recipient.sms_opted_out_at).is_(None))
             .values(sms_opted_out_at=None).returning(col(Recipient.id))),
}


@pytest.mark.parametrize("lookup", list(LOOKUPS))
def test_the_lookups_use_the_indexes(fresh: Engine, lookup: str) -> None:
    init_db(fresh)
    insert_recipients(fresh, recipient_rows())
    index, statement = LOOKUPS[lookup]
    with fresh.connect() as conn:
        found = plan(conn, statement)
        print(f"{fresh.dialect.name} {lookup}:\n{found}")
        assert index in found, found
        if fresh.dialect.name == "sqlite":
            assert f"USING INDEX {index} (" in found, found
        else:
            assert "Seq Scan" not in found, found
            generic = generic_plan(conn, statement)
            print(f"generic:\n{generic}")
            assert index in generic and "Seq Scan" not in generic, generic


def test_a_large_sqlite_import_sets_the_partial_phone_index_aside_and_back(tmp_path: Path) -> None:
    """``audience/import_indexes.py`` drops ``ix_recipient_phone`` and creates it again from the
    statement SQLite kept: the ``WHERE`` comes back with it."""
    eng = make_engine(f"sqlite:///{tmp_path / 'set_aside.db'}")
    init_db(eng)
    before = indexes(eng)
    with eng.begin() as conn:
        statements = set_aside(conn)
        assert "ix_recipient_phone" in statements
        assert "ix_recipient_phone" not in indexes_on(conn)
        restore(conn, statements)
    assert indexes(eng) == before
    assert before["ix_recipient_phone"].endswith("WHERE phone IS NOT NULL")
    eng.dispose()


def indexes_on(conn: Connection) -> set[str]:
    return {str(n) for n in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'recipient'").scalars()}
