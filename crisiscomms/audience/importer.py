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

How it is fast and flat: the file is read once, in blocks (:mod:`.csv_lines`; a plain block
is split with ``str`` methods), checked column by column (:mod:`.import_rows`), for a large
file in a second process while this one writes (:mod:`.import_checking`), and written inside
one transaction by :mod:`.import_writer`. A small file keeps the table's unique index on
``email``, which names a duplicate as its chunk is written; a large one sets the indexes aside
(:mod:`.import_indexes`) and builds them again before it commits, and building the ``email``
index is what finds the duplicates (:func:`_settle_duplicates`). Memory holds a few chunks,
never the addresses seen. A refused file's transaction is rolled back: nothing was written.
Figures: ``bench/fanout.py --import-only`` (docs/scaling.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from crisiscomms.audience.csv_lines import records
from crisiscomms.audience.import_checking import (
    SHARE,
    checked_chunks,
    checked_elsewhere,
    use_second_process,
)
from crisiscomms.audience.import_indexes import (
    EMAIL_INDEX,
    estimated_lines,
    restore,
    set_aside,
    worth_setting_aside,
)
from crisiscomms.audience.import_rows import column_problems
from crisiscomms.audience.import_writer import ChunkWriter
from crisiscomms.audience.recipients import ANALYZE_AFTER
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError


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


def _lines_holding(path: Path, header: Sequence[str], emails: set[str]) -> dict[str, list[int]]:
    """The lines, in order, of the rows that passed the checks and hold one of ``emails`` (a
    second read of the file, only when it repeats an address or holds one already there)."""
    lines: dict[str, list[int]] = {}
    for chunk in checked_chunks(path, header):
        for line, email in zip(chunk.lines, chunk.values[0], strict=True):
            if email in emails:
                lines.setdefault(str(email), []).append(line)
    return lines


def _settle_duplicates(conn: Connection, writer: ChunkWriter, path: Path,
                       header: Sequence[str], report: ImportReport, *, remove: bool) -> None:
    """After a bulk write whose unique index on ``email`` could not be built: find the
    addresses held twice, and report each line that repeats one (``already a recipient`` when
    the table held it before, else ``duplicate of line N`` for all but its first line). With
    ``remove``, delete the rows those lines wrote, so that the index can be built."""
    held = conn.exec_driver_sql(  # a sort of the table: the index is not there to help
        "SELECT email, min(id) FROM recipient GROUP BY email HAVING count(*) > 1").all()
    before = {str(email) for email, first in held if first <= writer.before}
    lines = _lines_holding(path, header, {str(email) for email, _ in held})
    for email, found in lines.items():
        if email in before:
            report.rejected += [(line, f"{email} is already a recipient") for line in found]
        else:
            report.rejected += [(line, f"duplicate of line {found[0]} ({email})")
                                for line in found[1:]]
    if not remove:
        return
    # the rows this import wrote for an address already there, or after its first line
    gone = conn.execute(text(
        "DELETE FROM recipient WHERE id IN (SELECT r.id FROM recipient AS r JOIN (SELECT email, "
        "min(id) AS first FROM recipient GROUP BY email HAVING count(*) > 1) AS d "
        "ON d.email = r.email WHERE r.id > :before AND (d.first <= :before OR r.id > d.first)) "
        "RETURNING consent"), {"before": writer.before}).scalars().all()
    report.imported -= len(gone)
    report.suppressed -= sum(1 for consent in gone if not consent)


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


def _load(conn: Connection, path: Path, header: list[str], report: ImportReport, *,
          refuse: bool, skip_invalid: bool) -> bool:
    """Check and write every line; True when the transaction should be committed."""
    set_aside_indexes = set_aside(conn) if worth_setting_aside(conn, path) else {}
    repeated: dict[int, str] = {}
    chunks = (checked_elsewhere(path, header, share=SHARE)
              if use_second_process(estimated_lines(path)) else checked_chunks(path, header))
    with ChunkWriter(conn, utcnow(), keyed=EMAIL_INDEX not in set_aside_indexes,
                     header=header) as writer:
        for chunk in chunks:
            report.lines += chunk.read
            report.rejected += chunk.rejected
            written, unconsented, conflicts = writer.write(chunk)
            report.imported += written
            report.suppressed += unconsented
            for line, email, before in conflicts:
                if before:
                    report.rejected.append((line, f"{email} is already a recipient"))
                else:
                    repeated[line] = email
        writer.finish()
    if repeated:
        where = _lines_holding(path, header, set(repeated.values()))
        report.rejected += [
            (line, f"duplicate of line {where[email][0]} ({email})" if email in where
             else f"{email} is already a recipient") for line, email in repeated.items()]
    keep = not refuse and (skip_invalid or not report.rejected)
    if keep or not writer.keyed:
        try:
            restore(conn, set_aside_indexes)  # the unique index on email first
        except IntegrityError:
            if EMAIL_INDEX not in set_aside_indexes:
                raise
            _settle_duplicates(conn, writer, path, header, report, remove=keep)
            if keep:
                restore(conn, set_aside_indexes)
    report.rejected.sort()
    if not keep or (report.rejected and not skip_invalid):
        report.imported = report.suppressed = 0
        return False
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
            if not _load(conn, path, header, report, refuse=bool(problems),
                         skip_invalid=skip_invalid):
                transaction.rollback()
                return report
    report.written = True
    return report
