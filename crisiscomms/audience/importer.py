"""Recipient import from CSV: strict, streamed, all or nothing.

Columns (header row, any order, names case-insensitive): ``email`` (required), and any of
``name``, ``locale``, ``time_zone``, ``phone`` (a mobile number in international form,
validated with ``phonenumbers`` and stored in E.164: the SMS channel's address), ``plan``,
``product``, ``order_ref``, ``lists``,
``unsubscribed`` / ``suppressed`` (true/false, yes/no, 1/0: true imports the person without
consent, counted and never sent to). Any other column, the table's own included (``consent``,
``unsubscribe_token``, ``confirm_token``...), is refused: the engine records consent and makes
every token, so a file can never plant a known one
(:data:`~crisiscomms.audience.import_rows.ALLOWED_COLUMNS`).

Every bad line is reported as ``(line, reason)``: not UTF-8 (Latin-1 from a spreadsheet), a
line over 65,536 characters, a field the CSV parser refuses, the wrong number of fields, an
address email-validator refuses (syntax only, no DNS), a bad flag, locale or time zone, text
the text rule of :mod:`crisiscomms.core.text` refuses, a value over its column's length, and an
address already in the file (``duplicate of line N``) or the database. Addresses are stored
lower-cased, the whole address, as status page subscriptions store them.

By default a file with any rejected line imports nothing (bad input changes nothing);
``skip_invalid`` imports the valid lines and reports the rest. A file whose header is wrong
(no ``email``, a column not allowed, a column twice) imports nothing either way: its lines are
still checked, so one run reports everything.

How it is fast and flat: the file is read once, in blocks (:mod:`.csv_lines`), checked a chunk
of 10,000 lines at a time, column by column (:mod:`.import_rows`), for a large file in a second
process while this one writes (:mod:`.import_checking`), and each chunk is
written straight into ``recipient`` inside one transaction: ``COPY`` on PostgreSQL, one
prepared ``INSERT`` for the chunk on SQLite. The unique index on ``email`` finds duplicates, so
memory holds a few chunks, never the addresses seen. A refused file's transaction is rolled back:
nothing was written. A large file on SQLite drops the random-order indexes (unsubscribe token,
phone) inside that transaction and builds them again before it commits
(:mod:`.import_indexes`). Figures: ``bench/fanout.py --import-only`` (docs/scaling.md).
"""

from __future__ import annotations

import base64
import gc
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from crisiscomms.audience.copy_text import copy_text
from crisiscomms.audience.csv_lines import records
from crisiscomms.audience.import_checking import (
    checked_chunks,
    checked_elsewhere,
    use_second_process,
)
from crisiscomms.audience.import_indexes import (
    estimated_lines,
    restore,
    set_aside,
    worth_setting_aside,
)
from crisiscomms.audience.import_rows import Row, check_email, column_problems
from crisiscomms.audience.models import Recipient
from crisiscomms.audience.recipients import ANALYZE_AFTER
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError

_LOOKUP = 500
_COLUMNS = ("email", "name", "locale", "time_zone", "plan", "product", "order_ref", "lists",
            "phone", "consent", "created_at", "unsubscribe_token")


class RecipientImportError(CrisisCommsError):
    """The file cannot be read at all."""


@dataclass
class ImportReport:
    lines: int = 0
    """Lines of recipients read (the header and blank lines not counted)."""
    imported: int = 0
    suppressed: int = 0
    """Imported without consent (unsubscribed / suppressed): never sent to."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """(line number in the file, reason), in line order."""
    written: bool = False


def _tokens(count: int) -> list[str]:
    """``count`` unsubscribe tokens, each as ``secrets.token_urlsafe(24)`` makes one (24 random
    bytes, 32 URL-safe characters), from one read of the system's random source."""
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(24 * count)).decode("ascii")
    return [encoded[i:i + 32] for i in range(0, 32 * count, 32)]


class _Writer:
    """Writes checked rows into ``recipient`` on the import's connection; a row whose address
    is already there is not written and comes back as a conflict."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        column = Recipient.__table__.c.created_at  # type: ignore[attr-defined]
        process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        self.now: Any = process(now) if process is not None and not self.postgres else now
        mark = "%s" if self.postgres else "?"
        names = ", ".join(_COLUMNS)
        self.insert = (f"INSERT INTO recipient ({names}) VALUES "
                       f"({', '.join([mark] * len(_COLUMNS))}) ON CONFLICT (email) DO NOTHING")
        self.copy = f"COPY recipient ({names}) FROM STDIN"
        self.before = self._max_id()

    def _max_id(self) -> int:
        return int(self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM recipient")
                   .scalar_one())

    def write(self, rows: Sequence[Row]) -> tuple[int, int, list[tuple[int, str, bool]]]:
        """Insert ``rows``; (written, written without consent, conflicts as (line, email,
        already there before this import))."""
        if not rows:
            return 0, 0, []
        values = [(*row[1:], self.now, token) for row, token in zip(rows, _tokens(len(rows)),
                                                                     strict=True)]
        chunk_start = self._max_id()
        if self.postgres and self._copied(values):
            return len(rows), sum(1 for row in rows if not row[-1]), []
        written = self.conn.exec_driver_sql(self.insert, values).rowcount
        unconsented = sum(1 for row in rows if not row[-1])
        if written == len(rows):
            return written, unconsented, []
        conflicts = self._conflicts(rows, chunk_start)
        lost = {line for line, _, _ in conflicts}
        unconsented -= sum(1 for row in rows if row[0] in lost and not row[-1])
        return written, unconsented, conflicts

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

    def _conflicts(self, rows: Sequence[Row], chunk_start: int) -> list[tuple[int, str, bool]]:
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


def _first_lines(path: Path, header: Sequence[str], emails: set[str]) -> dict[str, int]:
    """The first line holding each of ``emails`` (a second read, only when the file repeats
    an address)."""
    first: dict[str, int] = {}
    at = list(header).index("email")
    with path.open("rb") as handle:
        stream = records(handle)
        next(stream, None)
        for line, fields, problem in stream:
            if problem is not None or fields is None or len(fields) != len(header):
                continue
            try:
                email = check_email(fields[at])
            except ValueError:
                continue
            if email in emails and email not in first:
                first[email] = line
    return first


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for the import (restored after): a chunk makes
    tens of thousands of short-lived lists and tuples, none in a cycle, and the collector would
    scan them again and again (a third of the checking time, measured)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _load(conn: Connection, path: Path, header: list[str],
          stream: Iterator[tuple[int, list[str] | None, str | None]], report: ImportReport,
          *, refuse: bool, skip_invalid: bool) -> bool:
    """Check and write every line; True when the transaction should be committed."""
    writer = _Writer(conn, utcnow())
    set_aside_indexes = set_aside(conn) if worth_setting_aside(conn, path) else []
    repeated: dict[int, str] = {}
    chunks = (checked_elsewhere(path, header) if use_second_process(estimated_lines(path))
              else checked_chunks(stream, header))
    for chunk in chunks:
        report.lines += chunk.lines
        report.rejected += chunk.rejected
        written, unconsented, conflicts = writer.write(chunk.rows)
        report.imported += written
        report.suppressed += unconsented
        for line, email, before in conflicts:
            if before:
                report.rejected.append((line, f"{email} is already a recipient"))
            else:
                repeated[line] = email
    if repeated:
        where = _first_lines(path, header, set(repeated.values()))
        report.rejected += [
            (line, f"duplicate of line {where[email]} ({email})" if email in where
             else f"{email} is already a recipient") for line, email in repeated.items()]
    report.rejected.sort()
    if refuse or (report.rejected and not skip_invalid):
        report.imported = report.suppressed = 0
        return False
    restore(conn, set_aside_indexes)
    if report.imported >= ANALYZE_AFTER and writer.postgres:
        conn.exec_driver_sql("ANALYZE recipient")  # fresh statistics, as insert_recipients
    return True


def import_csv(engine: Engine, path: Path, *, skip_invalid: bool = False) -> ImportReport:
    """Check every line of ``path`` and write it (all, or with ``skip_invalid`` the valid)."""
    report = ImportReport()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecipientImportError(f"cannot read {path}: {exc.strerror}") from None
    with handle, engine.connect() as conn:
        stream = records(handle)
        first = next(stream, None)
        if first is None:
            report.rejected.append((1, "the file is empty (a header row with an 'email' "
                                       "column is needed)"))
            return report
        _, fields, problem = first
        header = [name.strip().lower() for name in fields or []]
        problems = [problem] if problem else column_problems(header)
        report.rejected += [(1, reason) for reason in problems]
        if fields is None or "email" not in header:
            return report
        with _collector_paused(), conn.begin() as transaction:
            if not _load(conn, path, header, stream, report, refuse=bool(problems),
                         skip_invalid=skip_invalid):
                transaction.rollback()
                return report
    report.written = True
    return report
