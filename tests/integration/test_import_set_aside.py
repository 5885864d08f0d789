"""The fast recipient import keeps the table whole on both backends: a database error midway
(a real trigger refusing one address) leaves the rows, the indexes and their definitions as
before, on SQLite with its indexes set aside and on PostgreSQL through ``COPY``; a process
killed midway through a large SQLite import leaves the same; values COPY text must escape are
stored exactly as checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crisiscomms.audience import import_indexes
from crisiscomms.audience.import_checking import CheckingError
from crisiscomms.audience.importer import import_csv
from crisiscomms.core.database import init_db, make_engine
from tests.recipient_schema import recipient_defaults, recipient_indexes

pytestmark = pytest.mark.integration

REFUSE = {
    "sqlite": ["CREATE TRIGGER refuse_one BEFORE INSERT ON recipient WHEN NEW.email = "
               "'user012500@example.com' BEGIN SELECT RAISE(ABORT, 'refused'); END"],
    "postgresql": [
        "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.email = 'user012500@example.com' THEN RAISE EXCEPTION 'refused'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_one BEFORE INSERT ON recipient FOR EACH ROW "
        "EXECUTE FUNCTION refuse_one()"],
}


def snapshot(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The table's indexes (name and definition) and columns' defaults, and its rows."""
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql(
            "SELECT id, email, name, unsubscribe_token FROM recipient ORDER BY id")]
    return recipient_indexes(engine) + recipient_defaults(engine), rows


def write(path: Path, count: int, *, start: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,name,phone\n")
        for i in range(start, start + count):
            handle.write(f"user{i:06d}@example.com,Ann {i},"
                         f"{f'+447911123{i % 1000:03d}' if i % 5 == 0 else ''}\n")
    return path


def test_a_database_error_midway_leaves_table_and_indexes_as_before(
        backend_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_indexes, "MIN_LINES", 1_000)  # SQLite sets its indexes aside
    assert import_csv(backend_engine, write(tmp_path / "seed.csv", 20, start=500_000)).written
    with backend_engine.begin() as conn:
        for statement in REFUSE[backend_engine.dialect.name]:
            conn.exec_driver_sql(statement)
    before = snapshot(backend_engine)
    assert len(before[0]) >= 4 and len(before[1]) == 20
    # SQLAlchemy wraps the SQLite error; COPY runs on psycopg's own cursor, which raises its own
    with pytest.raises((sa.exc.DBAPIError, psycopg.Error), match="refused"):
        import_csv(backend_engine, write(tmp_path / "r.csv", 15_000))  # line 12,502 of two chunks
    assert snapshot(backend_engine) == before


def test_values_copy_text_escapes_are_stored_as_checked(backend_engine: Engine,
                                                        tmp_path: Path) -> None:
    names = ["back\\slash", "\\N", "\\", 'quote "q"', "Zoë", "名前", "tab\\tlike"]
    path = tmp_path / "r.csv"
    lines = [f'n{i}@example.com,"{name.replace(chr(34), chr(34) * 2)}",plan\\{i}'
             for i, name in enumerate(names)]
    path.write_text("email,name,plan\n" + "\n".join(lines) + "\n", encoding="utf-8")
    report = import_csv(backend_engine, path)
    assert report.written and report.rejected == []
    with backend_engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT name, plan, product FROM recipient ORDER BY email").all()
    assert [tuple(r) for r in stored] == [(name, f"plan\\{i}", None)
                                          for i, name in enumerate(names)]


_IMPORT = """
import sys
from pathlib import Path
from crisiscomms.audience.importer import import_csv
from crisiscomms.core.database import make_engine
import_csv(make_engine(sys.argv[1]), Path(sys.argv[2]))
print("finished")
"""


def test_a_large_sqlite_import_killed_midway_leaves_table_and_indexes(tmp_path: Path) -> None:
    """A real size (over MIN_LINES: the indexes are set aside), the importing process killed
    with SIGKILL once its transaction has written a few MiB: the next connection finds the
    indexes dropped inside it back, and none of its rows."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = make_engine(url)
    init_db(engine)
    assert import_csv(engine, write(tmp_path / "seed.csv", 20, start=900_000)).written
    before = snapshot(engine)
    engine.dispose()
    path = write(tmp_path / "r.csv", 400_000)
    wal = tmp_path / "crash.db-wal"
    child = subprocess.Popen([sys.executable, "-c", _IMPORT, url, str(path)],
                             stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (not wal.exists() or wal.stat().st_size < 8 << 20) and child.poll() is None:
        assert time.monotonic() < deadline, "the import wrote nothing in 300 s"
        time.sleep(0.05)
    assert child.poll() is None, "the import finished before it could be killed: grow the file"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    engine = make_engine(url)
    try:
        assert snapshot(engine) == before
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    finally:
        engine.dispose()


def _checker_pids() -> list[int]:
    """This process's children running the import's checker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"crisiscomms.audience.import_checking" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_checking_process_killed_midway_stops_the_import_and_writes_nothing(
        backend_engine: Engine, tmp_path: Path) -> None:
    import threading

    assert import_csv(backend_engine, write(tmp_path / "seed.csv", 20, start=900_000)).written
    before = snapshot(backend_engine)
    path = write(tmp_path / "r.csv", 300_000)  # over MIN_LINES: checked in a second process
    killed: list[int] = []

    def kill_the_checker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in _checker_pids():
                time.sleep(1.0)  # let it check and hand over a few chunks first
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_checker)
    killer.start()
    try:
        with pytest.raises(CheckingError, match=r"stopped \(exit code -9\)"):
            import_csv(backend_engine, path)
    finally:
        killer.join()
    assert killed and _checker_pids() == []
    assert snapshot(backend_engine) == before
