"""A large recipient import on SQLite sets ``recipient``'s indexes aside and builds them again,
sorted, before it commits.

A recipient's unsubscribe token is random, so each row of an import lands on a random page of
``ix_recipient_unsubscribe_token`` (and of ``ix_recipient_phone`` when the file has numbers,
and of ``ix_recipient_email`` when the file is not sorted by address: a customer's export
rarely is). Once such an index outgrows SQLite's page cache every row costs a page read and,
later, a page write: a million rows took 21 s of CPU with the token index in place and 9 s
without it, and a shuffled file 16.5 s with the email index against 5.6 s without; building an
index once from a sort takes about 0.7 s (measured: ``docs/scaling.md``). So an import of at least
:data:`MIN_LINES` lines, and at least half as many as the table holds, drops those indexes
inside its own transaction, writes, and creates them again from the very ``CREATE`` statements
SQLite kept for them before it commits. Nothing is weakened: DDL is transactional in SQLite, so
a refused file, an error or a crash midway rolls the drop back with the rows (the indexes are
there again, as they were), and a reader on another connection sees the committed table and
its indexes throughout (WAL). The unique index on ``email`` is built first: a clash there is
an address already in the table or repeated in the file, which the importer then names line by
line (:func:`.importer._settle_duplicates`).

PostgreSQL does the same (``COPY`` into a table with its indexes took 15 s for a million rows
of which 10 s were the indexes; measured: ``docs/scaling.md``), with one cost SQLite does not
have: dropping an index takes the table's ``ACCESS EXCLUSIVE`` lock until the import commits, so
a reader of ``recipient`` (a sender's batch, an unsubscribe) waits for the import, about 5 s per
million rows. It is taken only for an import at least as large as the rule above, and waited
for at most :data:`LOCK_WAIT` seconds: when a long transaction holds the table, the import
keeps the indexes and writes row by row instead (slower, and no one waits for it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

EMAIL_INDEX = "ix_recipient_email"
SET_ASIDE = (EMAIL_INDEX, "ix_recipient_unsubscribe_token", "ix_recipient_phone")
"""The indexes a large import drops and builds again (random order: each row a random page).
The unique index on ``email`` is built first, and building it is what finds an address that
was already there or came twice (:mod:`.importer`)."""
MIN_LINES = 50_000
"""Below this, building an index again costs more than keeping it."""
LOCK_WAIT = 2.0
"""Seconds a PostgreSQL import waits for the table's lock before it keeps the indexes."""
_SAMPLE_BYTES = 1 << 16


def estimated_lines(path: Path) -> int:
    """About how many lines ``path`` holds: its size over the mean length of its first lines."""
    size = os.stat(path).st_size
    with path.open("rb") as handle:
        sample = handle.read(_SAMPLE_BYTES)
    lines = sample.count(b"\n")
    if lines == 0:
        return 1
    return size * lines // len(sample)


def worth_setting_aside(conn: Connection, path: Path) -> bool:
    """True when ``path`` is large, on its own and beside the table (building an index again
    sorts every row the table will hold, old ones included)."""
    lines = estimated_lines(path)
    if lines < MIN_LINES:
        return False
    rows = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM recipient").scalar_one())
    return lines * 2 >= rows


def set_aside(conn: Connection, names: tuple[str, ...] = SET_ASIDE) -> dict[str, str]:
    """Drop ``names`` (those that exist) inside the connection's transaction; the statements
    that create them again, exactly as the database recorded them, by name, for
    :func:`restore`. On PostgreSQL, an empty dict (nothing dropped) when the table's lock was
    not granted within :data:`LOCK_WAIT`: someone holds it, and the import keeps the indexes."""
    if conn.dialect.name == "postgresql":
        return _set_aside_postgres(conn, names)
    dbapi = conn.connection.dbapi_connection
    if not getattr(dbapi, "in_transaction", True):
        # Python's sqlite3 opens a transaction before INSERT/UPDATE/DELETE only, never before
        # DDL: without this the DROP would be committed at once, whatever happens next.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    found = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'recipient' "
        f"AND sql IS NOT NULL AND name IN ({', '.join('?' * len(names))})", names).all()
    statements = {str(name): str(sql) for name, sql in found}
    for name in statements:
        conn.exec_driver_sql(f"DROP INDEX {_quoted(name)}")
    return statements


def _set_aside_postgres(conn: Connection, names: tuple[str, ...]) -> dict[str, str]:
    from psycopg.errors import LockNotAvailable

    found = conn.exec_driver_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'recipient' AND indexname = ANY(%s)", (list(names),)).all()
    statements = {str(name): str(sql) for name, sql in found}
    if not statements:
        return {}
    savepoint = conn.begin_nested()
    try:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(LOCK_WAIT * 1000)}ms'")
        conn.exec_driver_sql(f"DROP INDEX {', '.join(map(_quoted, statements))}")
        conn.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")
    except DBAPIError as exc:
        savepoint.rollback()  # the lock_timeout with it
        if isinstance(exc.orig, LockNotAvailable):
            return {}
        raise
    savepoint.commit()
    return statements


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def restore(conn: Connection, statements: dict[str, str]) -> None:
    """Create the indexes :func:`set_aside` dropped, ``statements`` emptied as each is built
    (a unique one checks every row as it is built: a clash raises IntegrityError, that one
    statement is taken back, in a savepoint on PostgreSQL, and the index stays in
    ``statements``)."""
    if conn.dialect.name == "postgresql":  # its index builds use parallel workers already
        for name in sorted(statements, key=lambda n: n != EMAIL_INDEX):
            with conn.begin_nested():
                conn.exec_driver_sql(statements[name])
            del statements[name]
        return
    with _sorting_threads(conn):
        for name in sorted(statements, key=lambda n: n != EMAIL_INDEX):
            conn.exec_driver_sql(statements[name])
            del statements[name]


@contextmanager
def _sorting_threads(conn: Connection) -> Iterator[None]:
    """SQLite sorts with helper threads, one per core (``PRAGMA threads``; it uses none by
    default) while the indexes are built: nothing else of the import runs then (0.4 s of a
    million rows' 5-7 s, measured), and the connection's setting is put back after."""
    before = int(conn.exec_driver_sql("PRAGMA threads").scalar_one())
    conn.exec_driver_sql(f"PRAGMA threads = {min(os.cpu_count() or 1, 8)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA threads = {before}")
