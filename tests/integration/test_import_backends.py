"""The streamed recipient import on both backends (PostgreSQL writes through ``COPY``): a clean
file lands whole with fresh tokens, a refused one leaves nothing, duplicates across chunks and
against the table are named by line, ``--skip-invalid`` keeps the first of each."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient

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


def test_duplicates_across_chunks_are_named_and_nothing_is_written(backend_engine: Engine,
                                                                  tmp_path: Path) -> None:
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
