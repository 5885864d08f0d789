"""A large import on SQLite sets the random-order indexes aside and builds them again before it
commits (``audience/import_indexes.py``): afterwards the table has exactly the indexes it had,
and they hold every row; a refused file or a failure midway leaves table and indexes as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crisiscomms.audience import import_indexes
from crisiscomms.audience.import_indexes import estimated_lines, worth_setting_aside
from crisiscomms.audience.importer import import_csv

LINES = 3_000


@pytest.fixture
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few thousand lines count as large here (the real threshold is 50,000 lines)."""
    monkeypatch.setattr(import_indexes, "MIN_LINES", 1_000)


def schema(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        return [(str(t), str(n), s) for t, n, s in conn.exec_driver_sql(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'recipient' "
            "ORDER BY name")]


def state(engine: Engine) -> tuple[list[tuple[str, str, str | None]], list[tuple[object, ...]]]:
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql(
            "SELECT id, email, phone, unsubscribe_token FROM recipient ORDER BY id")]
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    return schema(engine), rows


def write(path: Path, count: int, *, start: int = 0, last: str | None = None) -> Path:
    lines = [f"user{i:06d}@example.com,Ann {i},{f'+447911123{i % 1000:03d}' if i % 7 else ''}"
             for i in range(start, start + count)]
    if last is not None:
        lines[-1] = last
    path.write_text("email,name,phone\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def index_used(engine: Engine, column: str, value: object) -> tuple[str, int]:
    """The plan's index for a lookup by ``column``, and the rows it finds."""
    with engine.connect() as conn:
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN SELECT id FROM recipient WHERE {column} = ?", (value,)))
        found = len(conn.exec_driver_sql(f"SELECT id FROM recipient WHERE {column} = ?",
                                         (value,)).all())
    return plan, found


@pytest.mark.usefixtures("low_threshold")
def test_a_large_import_leaves_exactly_the_indexes_it_found_and_they_hold_every_row(
        engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, write(tmp_path / "seed.csv", 10, start=900_000))  # small: no set-aside
    before = schema(engine)
    assert {n for _, n, _ in before} >= {"ix_recipient_unsubscribe_token", "ix_recipient_phone",
                                          "ix_recipient_email"}
    report = import_csv(engine, write(tmp_path / "r.csv", LINES))
    assert (report.written, report.imported, report.rejected) == (True, LINES, [])
    after, rows = state(engine)
    assert after == before
    token = str(rows[-1][3])
    plan, found = index_used(engine, "unsubscribe_token", token)
    assert "ix_recipient_unsubscribe_token" in plan and found == 1
    plan, found = index_used(engine, "phone", "+447911123007")
    assert "ix_recipient_phone" in plan and found == sum(
        1 for i in [*range(LINES), *range(900_000, 900_010)] if i % 7 and i % 1000 == 7)
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.exec_driver_sql("UPDATE recipient SET unsubscribe_token = ? WHERE id = 1", (token,))


@pytest.mark.usefixtures("low_threshold")
def test_a_bad_last_line_writes_nothing_and_leaves_the_indexes(engine: Engine,
                                                               tmp_path: Path) -> None:
    import_csv(engine, write(tmp_path / "seed.csv", 10, start=900_000))
    before = state(engine)
    report = import_csv(engine, write(tmp_path / "r.csv", LINES, last="not-an-address,Bo,"))
    assert not report.written and report.imported == 0
    assert [line for line, _ in report.rejected] == [LINES + 1]
    assert state(engine) == before


@pytest.mark.usefixtures("low_threshold")
def test_a_failure_midway_rolls_the_dropped_indexes_back(engine: Engine, tmp_path: Path) -> None:
    """A real database error in the middle of the file (a trigger that refuses one address):
    the exception reaches the caller, and the table, its rows and its indexes are as before."""
    import_csv(engine, write(tmp_path / "seed.csv", 10, start=900_000))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON recipient "
            "WHEN NEW.email = 'user001500@example.com' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    before = state(engine)
    with pytest.raises(sa.exc.IntegrityError, match="refused"):
        import_csv(engine, write(tmp_path / "r.csv", LINES))
    assert state(engine) == before


@pytest.mark.usefixtures("low_threshold")
def test_a_small_file_or_a_big_table_keeps_its_indexes(engine: Engine, tmp_path: Path) -> None:
    small = write(tmp_path / "small.csv", 500)
    large = write(tmp_path / "large.csv", LINES, start=10_000)
    with engine.connect() as conn:
        assert not worth_setting_aside(conn, small)
        assert worth_setting_aside(conn, large)
    import_csv(engine, write(tmp_path / "big.csv", 2 * LINES + 100, start=100_000))
    with engine.connect() as conn:  # the table now holds over twice the file: kept
        assert not worth_setting_aside(conn, large)


def test_the_line_estimate_is_close(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", 20_000)
    assert 19_000 <= estimated_lines(path) <= 21_000
    empty = tmp_path / "e.csv"
    empty.write_text("email")
    assert estimated_lines(empty) == 1


@pytest.mark.usefixtures("low_threshold")
def test_importing_the_same_file_again_adds_no_one(engine: Engine, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """As before the import was fast: a second import of the same file refuses every line as
    already a recipient (``--skip-invalid``: skips them), indexes set aside and checked in a
    second process alike; the table is unchanged."""
    from crisiscomms.audience import import_checking

    monkeypatch.setattr(import_checking, "MIN_LINES", 1_000)
    path = write(tmp_path / "r.csv", LINES)
    assert import_csv(engine, path).imported == LINES
    before = state(engine)
    for skip_invalid in (False, True):
        report = import_csv(engine, path, skip_invalid=skip_invalid)
        assert report.imported == 0 and report.written is skip_invalid
        assert len(report.rejected) == LINES
        assert report.rejected[0] == (2, "user000000@example.com is already a recipient")
        assert state(engine) == before


@pytest.mark.usefixtures("low_threshold")
@pytest.mark.parametrize("second_process", [False, True])
def test_a_large_import_names_repeats_and_known_addresses_from_the_index_build(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        second_process: bool) -> None:
    """The unique index on email is set aside too: building it again is what finds an address
    repeated in the file or already in the table, and each such line is named as a small
    import names it; ``--skip-invalid`` keeps the first line of a repeat, and the counts and
    the indexes are right afterwards."""
    from crisiscomms.audience import import_checking

    monkeypatch.setattr(import_checking, "MIN_LINES", 1 if second_process else 10**9)
    seed = tmp_path / "seed.csv"
    seed.write_text("email\nold@example.com\n")
    import_csv(engine, seed)
    lines = [f"user{i:06d}@example.com,Ann {i},{'yes' if i % 10 == 0 else 'no'}"
             for i in range(LINES)]
    lines[2_000] = "USER000010@example.com,Twin,yes"  # line 2,002 repeats line 12
    lines[2_500] = "user000010@example.com,Triplet,no"  # and line 2,502 too
    lines[100] = "Old@Example.com,Known,no"  # line 102: already a recipient
    path = tmp_path / "r.csv"
    path.write_text("email,name,unsubscribed\n" + "\n".join(lines) + "\n")
    before = state(engine)
    expected = [(102, "old@example.com is already a recipient"),
                (2_002, "duplicate of line 12 (user000010@example.com)"),
                (2_502, "duplicate of line 12 (user000010@example.com)")]
    report = import_csv(engine, path)
    assert (report.written, report.imported, report.rejected) == (False, 0, expected)
    assert state(engine) == before
    report = import_csv(engine, path, skip_invalid=True)
    assert (report.written, report.rejected) == (True, expected)
    assert report.imported == LINES - 3
    # every tenth line says yes, but lines 102 and 2,502 were changed to no and line 2,002 (a
    # yes) was not written
    unsubscribed = sum(1 for i in range(LINES) if i % 10 == 0) - 3
    assert report.suppressed == unsubscribed
    after, rows = state(engine)
    assert after == before[0] and len(rows) == LINES - 3 + 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT name FROM recipient WHERE email = 'user000010@example.com'").all() == [
            ("Ann 10",)]
        assert conn.exec_driver_sql("SELECT count(*) FROM recipient WHERE NOT consent"
                                    ).scalar_one() == unsubscribed
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM recipient WHERE email = 'x'"))
    assert "ix_recipient_email" in plan
