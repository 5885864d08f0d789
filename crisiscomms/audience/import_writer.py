"""The recipient import's writes: checked chunks into ``recipient``, on the import's connection
and inside its one transaction.

Two ways, chosen per import by :mod:`.importer`:

- **keyed** (the table keeps its unique index on ``email``): each row goes in with
  ``ON CONFLICT (email) DO NOTHING`` (SQLite) or through ``COPY`` in a savepoint that a
  duplicate rolls back (PostgreSQL), and a row not written comes back as a conflict at once.
- **bulk** (a large import: :mod:`.import_indexes` set the unique index on ``email`` aside with
  the others): plain multi-row ``INSERT`` s on SQLite, one ``COPY`` for the whole file on
  PostgreSQL; the index is built again before the commit, and building it is what finds an
  address the table or the file already held (:func:`.importer._settle_duplicates`).

A bulk statement binds only what differs between its rows: a column that holds one value
across the chunk (the import's time, consent, a column the file does not have) is bound once
per statement as a numbered parameter, and 200 rows share one statement. The binding of each
value is most of SQLite's time here: a million rows of the drill file bind 6 million values
instead of 12 million, in 5,000 statements instead of a million steps (``docs/scaling.md``).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from crisiscomms.audience.copy_text import Same, copy_columns, copy_text, copy_value
from crisiscomms.audience.import_checking import CheckedChunk
from crisiscomms.audience.models import Recipient

COLUMNS = ("email", "name", "locale", "time_zone", "plan", "product", "order_ref", "lists",
           "phone", "consent", "created_at", "unsubscribe_token")
"""What an import writes: :data:`~.import_rows.ROW_FIELDS`, then the time and a fresh token."""
NULL_UNLESS_GIVEN = ("name", "plan", "product", "order_ref", "lists", "phone")
"""Columns NULL on every row of a file that does not have them (``locale`` and ``time_zone``
take defaults, ``consent`` is always written)."""
_CREATED_AT = COLUMNS.index("created_at")
ROWS_PER_STATEMENT = 200
_LOOKUP = 500

Conflict = tuple[int, str, bool]
"""``(line, email, the address was there before this import)``."""


def new_tokens(count: int) -> list[str]:
    """``count`` unsubscribe tokens, each as ``secrets.token_urlsafe(24)`` makes one (24 random
    bytes, 32 URL-safe characters), from one read of the system's random source."""
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(24 * count)).decode("ascii")
    return [encoded[i:i + 32] for i in range(0, 32 * count, 32)]


def _statement(constants: Sequence[str], varying: Sequence[str], rows: int) -> str:
    """``INSERT`` of ``rows`` rows: ``?1``... the constants, then each row's varying values."""
    first = len(constants) + 1
    refs = {name: f"?{at}" for at, name in enumerate(constants, start=1)}
    width = len(varying)
    tuples = []
    for row in range(rows):
        refs.update((name, f"?{first + row * width + at}") for at, name in enumerate(varying))
        tuples.append(f"({', '.join(refs[name] for name in COLUMNS)})")
    return f"INSERT INTO recipient ({', '.join(COLUMNS)}) VALUES {', '.join(tuples)}"


class ChunkWriter:
    """Writes checked chunks into ``recipient`` (see the module's docstring)."""

    def __init__(self, conn: Connection, now: datetime, *, keyed: bool,
                 header: Sequence[str] = COLUMNS) -> None:
        self.conn = conn
        self.keyed = keyed
        self.postgres = conn.dialect.name == "postgresql"
        column = Recipient.__table__.c.created_at  # type: ignore[attr-defined]
        process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        self.now: Any = process(now) if process is not None and not self.postgres else now
        mark = "%s" if self.postgres else "?"
        names = ", ".join(COLUMNS)
        self.insert = (f"INSERT INTO recipient ({names}) VALUES "
                       f"({', '.join([mark] * len(COLUMNS))}) ON CONFLICT (email) DO NOTHING")
        self.copy = f"COPY recipient ({names}) FROM STDIN"
        self.header = tuple(header)
        self.before = self.max_id()
        self._statements: dict[tuple[tuple[str, ...], int], str] = {}
        self._stream = ExitStack()
        self._copy: Any = None
        self._left_out: set[int] = set()
        self._default_set = False

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.__exit__(*exc)  # type: ignore[arg-type]

    def finish(self) -> None:
        """End the bulk ``COPY`` stream (PostgreSQL): the server's last word on it (a refused
        row) is raised here."""
        self._stream.close()
        self._copy = None
        if self._default_set:
            self.conn.exec_driver_sql("ALTER TABLE recipient ALTER COLUMN created_at "
                                      "DROP DEFAULT")
            self._default_set = False

    def max_id(self) -> int:
        return int(self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM recipient")
                   .scalar_one())

    def write(self, chunk: CheckedChunk) -> tuple[int, int, list[Conflict]]:
        """Insert ``chunk``'s rows; (written, written without consent, conflicts)."""
        count = len(chunk.lines)
        if not count:
            return 0, 0, []
        unconsented = count - chunk.values[-1].count(True)
        if not self.keyed and self.postgres:
            self._stream_copy([*chunk.values, Same(self.now), new_tokens(count)], count)
            return count, unconsented, []
        columns = [*chunk.values, (self.now,) * count, new_tokens(count)]
        if not self.keyed:
            self._insert_bulk(columns, count)
            return count, unconsented, []
        values = list(zip(*columns, strict=True))
        chunk_start = self.max_id()
        if self.postgres and self._copied(values):
            return count, unconsented, []
        written = self.conn.exec_driver_sql(self.insert, values).rowcount
        if written == count:
            return written, unconsented, []
        rows = chunk.rows
        conflicts = self._conflicts(rows, chunk_start)
        lost = {line for line, _, _ in conflicts}
        unconsented -= sum(1 for row in rows if row[0] in lost and not row[-1])
        return written, unconsented, conflicts

    def _insert_bulk(self, columns: list[Sequence[object]], count: int) -> None:
        """SQLite, no unique index on ``email``: multi-row ``INSERT`` s binding once what the
        chunk's rows share."""
        constants: list[str] = []
        shared: list[object] = []
        varying: list[Sequence[object]] = []
        names: list[str] = []
        for name, column in zip(COLUMNS, columns, strict=True):
            first = column[0]
            if column.count(first) == count:
                constants.append(name)
                shared.append(first)
            else:
                names.append(name)
                varying.append(column)
        flat = list(chain.from_iterable(zip(*varying, strict=True))) if varying else []
        width = len(varying)
        for start in range(0, count, ROWS_PER_STATEMENT):
            rows = min(ROWS_PER_STATEMENT, count - start)
            key = (*constants, "|", *names), rows
            statement = self._statements.get(key)
            if statement is None:
                statement = self._statements[key] = _statement(constants, names, rows)
            self.conn.exec_driver_sql(
                statement, tuple(shared + flat[start * width:(start + rows) * width]))

    def _stream_copy(self, columns: list[Sequence[object] | Same], count: int) -> None:
        """PostgreSQL, no unique index on ``email``: every chunk into one ``COPY``, so the
        server stores a chunk while this process reads and checks the next (a ``COPY`` per
        chunk waits for each: measured 9.1 s against 4.2 s for a million rows)."""
        if self._copy is None:
            # left out: what a file without the column holds on every row (NULL), and the
            # import's time when it can be the column's default
            self._left_out = {at for at, name in enumerate(COLUMNS)
                              if name in NULL_UNLESS_GIVEN and name not in self.header}
            if self._time_as_default():
                self._left_out.add(_CREATED_AT)
            streamed = [name for at, name in enumerate(COLUMNS) if at not in self._left_out]
            cursor = self._stream.enter_context(
                self.conn.connection.dbapi_connection.cursor())  # type: ignore[union-attr, arg-type]
            self._copy = self._stream.enter_context(
                cursor.copy(f"COPY recipient ({', '.join(streamed)}) FROM STDIN"))
        self._copy.write(copy_columns(
            [column for at, column in enumerate(columns) if at not in self._left_out], count))

    def _time_as_default(self) -> bool:
        """Make the import's time ``created_at``'s default for the rest of this transaction,
        so the ``COPY`` leaves the column out: the server parsed the same timestamp a
        million times otherwise (about 0.6 s of its 4-6 s for a million rows, measured). The table
        is this import's alone meanwhile (:mod:`.import_indexes` holds its lock since the
        indexes were dropped), :meth:`finish` drops the default again before the commit, and
        a rollback takes it back with the rows. False, and nothing changed, when the column
        has a default of its own."""
        own = self.conn.exec_driver_sql(
            "SELECT 1 FROM pg_attrdef AS d JOIN pg_attribute AS a ON a.attrelid = d.adrelid "
            "AND a.attnum = d.adnum WHERE d.adrelid = 'recipient'::regclass "
            "AND a.attname = 'created_at'").first()
        if own is not None:
            return False
        # a literal: DDL takes no parameters; the text is copy_value's ISO form of a datetime
        self.conn.exec_driver_sql("ALTER TABLE recipient ALTER COLUMN created_at SET DEFAULT "
                                  f"'{copy_value(self.now)}'::timestamptz")
        self._default_set = True
        return True

    def _copied(self, values: list[tuple[object, ...]]) -> bool:
        """PostgreSQL: the chunk through ``COPY`` inside a savepoint; False (nothing written)
        when an address is already there, for the row-by-row path to sort out."""
        from psycopg.errors import UniqueViolation

        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        savepoint = self.conn.begin_nested()
        try:
            with cursor.copy(self.copy) as copy:
                copy.write(copy_text(values))
        except UniqueViolation:
            savepoint.rollback()
            return False
        except BaseException:
            savepoint.rollback()
            raise
        savepoint.commit()
        return True

    def _conflicts(self, rows: Sequence[tuple[object, ...]],
                   chunk_start: int) -> list[Conflict]:
        """Which rows were not written: their address was there before the import, or came
        earlier in the file (an earlier chunk, or earlier in this one)."""
        ids: dict[str, int] = {}
        emails = [str(row[1]) for row in rows]
        for at in range(0, len(emails), _LOOKUP):
            part = emails[at:at + _LOOKUP]
            found = self.conn.execute(text("SELECT email, id FROM recipient WHERE email IN "
                                           f"({', '.join(f':e{i}' for i in range(len(part)))})"),
                                      {f"e{i}": e for i, e in enumerate(part)})
            ids.update((str(e), int(i)) for e, i in found)
        conflicts = []
        claimed: set[str] = set()
        for row in rows:
            email = str(row[1])
            row_id = ids.get(email, 0)
            if row_id > chunk_start and email not in claimed:
                claimed.add(email)  # the first line of the chunk with it wrote it
                continue
            conflicts.append((int(row[0]), email, row_id <= self.before))  # type: ignore[call-overload]
        return conflicts
