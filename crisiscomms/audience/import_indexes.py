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

PostgreSQL keeps its indexes: dropping one there takes an ``ACCESS EXCLUSIVE`` lock that would
stop every sender reading recipients for as long as the import runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Connection

EMAIL_INDEX = "ix_recipient_email"
SET_ASIDE = (EMAIL_INDEX, "ix_recipient_unsubscribe_token", "ix_recipient_phone")
"""The indexes a large import drops and builds again (random order: each row a random page).
The unique index on ``email`` is built first, and building it is what finds an address that
was already there or came twice (:mod:`.importer`)."""
MIN_LINES = 50_000
"""Below this, building an index again costs more than keeping it."""
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
    """True on SQLite when ``path`` is large, on its own and beside the table (building an
    index again sorts every row the table will hold, old ones included)."""
    if conn.dialect.name != "sqlite":
        return False
    lines = estimated_lines(path)
    if lines < MIN_LINES:
        return False
    rows = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM recipient").scalar_one())
    return lines * 2 >= rows


def set_aside(conn: Connection, names: tuple[str, ...] = SET_ASIDE) -> dict[str, str]:
    """Drop ``names`` (those that exist) inside the connection's transaction; the statements
    that create them again, exactly as SQLite recorded them, by name, for :func:`restore`."""
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
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
    return statements


def restore(conn: Connection, statements: dict[str, str]) -> None:
    """Create the indexes :func:`set_aside` dropped, ``statements`` emptied as each is built
    (a unique one checks every row as it is built: a clash raises IntegrityError, SQLite
    takes back that one statement, and the index stays in ``statements``)."""
    for name in sorted(statements, key=lambda n: n != EMAIL_INDEX):
        conn.exec_driver_sql(statements[name])
        del statements[name]
