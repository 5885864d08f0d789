"""A large import's lines are read and checked in a second process (``import_checking.py``):
the report and the rows written are exactly those of checking in-process, bad lines of every
kind included; an error in the checker stops the import and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from crisiscomms.audience import import_checking
from crisiscomms.audience.import_checking import (
    CheckingError,
    checked_chunks,
    checked_elsewhere,
)
from crisiscomms.audience.importer import import_csv
from crisiscomms.core.database import init_db, make_engine

HEADER = "email,name,locale,time_zone,phone,unsubscribed\n"


def hostile_file(path: Path) -> Path:
    """25,000 lines (three chunks) with every kind of bad line scattered through them."""
    lines = [f"user{i:05d}@example.com,Ann {i},fr-CA,Europe/Paris,"
             f"{'+447911123456' if i % 9 == 0 else ''},{'yes' if i % 4 == 0 else 'no'}"
             for i in range(25_000)]
    lines[3] = "not-an-address,Bo,en,UTC,,no"
    lines[10_400] = "user00017@example.com,Twin,en,UTC,,no"  # a duplicate, a chunk later
    lines[12_000] = "x@example.com,Cy,en,Mars/Olympus,,no"
    lines[17_000] = "y@example.com,Di,en,UTC,+44 20 7946 0958,no"  # a landline
    lines[19_999] = "z@example.com,\"unterminated,en,UTC,,no"
    lines[24_999] = "w@example.com,Ed,en,UTC,,maybe"
    body = ("\n".join(lines) + "\n").encode("utf-8")
    body = body.replace(b"Ann 5000,", b"Ann \xe9,")  # Latin-1 on line 5,002
    path.write_bytes(HEADER.encode("utf-8") + body)
    return path


def imported(tmp_path: Path, name: str, path: Path, **options: bool) -> tuple[object, list]:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    init_db(engine)
    try:
        report = import_csv(engine, path, **options)
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql(
                "SELECT email, name, locale, time_zone, phone, consent FROM recipient "
                "ORDER BY id")]
    finally:
        engine.dispose()
    return report, rows


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_second_process_reports_and_writes_exactly_as_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip_invalid: bool) -> None:
    path = hostile_file(tmp_path / "r.csv")
    monkeypatch.setattr(import_checking, "MIN_LINES", 10**9)
    here = imported(tmp_path, "here.db", path, skip_invalid=skip_invalid)
    monkeypatch.setattr(import_checking, "MIN_LINES", 1)
    elsewhere = imported(tmp_path, "elsewhere.db", path, skip_invalid=skip_invalid)
    assert elsewhere == here
    report, rows = here
    assert [line for line, _ in report.rejected] == [  # type: ignore[attr-defined]
        5, 5_002, 10_402, 12_002, 17_002, 20_001, 25_001]
    assert len(rows) == report.imported  # type: ignore[attr-defined]
    assert (len(rows) > 20_000) if skip_invalid else rows == []


def test_the_chunks_are_the_same_in_order(tmp_path: Path) -> None:
    path = hostile_file(tmp_path / "r.csv")
    header = HEADER.strip().split(",")
    here = list(checked_chunks(path, header))
    assert list(checked_elsewhere(path, header)) == here
    # line 5,002 is not UTF-8: the file is read record by record from the first block on, and
    # the open quote on line 20,001 joins the lines after it
    assert [c.read for c in here] == [9_999, 10_000, 2_689]  # the first held the header


@pytest.mark.parametrize("share", [1, 2, import_checking.SHARE])
def test_blocks_shared_with_the_importing_process_are_checked_the_same(
        tmp_path: Path, share: int) -> None:
    """Some plain blocks are sent unchecked and checked by the receiving process (every
    ``share``-th; 1: all of them): the chunks are the same, in the same order, bad lines in a
    shared block and the record-by-record rest after the first block that is not plain
    included."""
    lines = [f"user{i:06d}@example.com,Ann {i},fr-CA,Europe/Paris,,no" for i in range(150_000)]
    for at in (7, 30_001, 60_002, 90_003, 120_004):  # one bad address in most blocks
        lines[at] = f"not-an-address-{at},Bo,en,UTC,,no"
    lines[140_000] = 'q@example.com,"Quoted, Name",en,UTC,,no'  # the rest: record by record
    path = tmp_path / "plain.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    header = HEADER.strip().split(",")
    here = list(checked_chunks(path, header))
    assert len(here) > 2 * share
    assert [line for chunk in here for line, _ in chunk.rejected] == [
        9, 30_003, 60_004, 90_005, 120_006]
    assert list(checked_elsewhere(path, header, share=share)) == here


def test_an_error_in_the_checker_stops_the_import(tmp_path: Path) -> None:
    with pytest.raises(CheckingError, match="FileNotFoundError"):
        list(checked_elsewhere(tmp_path / "gone.csv", ["email"]))


def test_small_files_and_daemons_check_in_process() -> None:
    assert not import_checking.use_second_process(import_checking.MIN_LINES - 1)
    assert import_checking.use_second_process(import_checking.MIN_LINES)


