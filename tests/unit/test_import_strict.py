"""The recipient import is strict (issue 14): an allow-list of columns, every bad line reported
as ``line N: reason`` (too long, not UTF-8, bad CSV, wrong width, bad address), nothing written;
and its fast, chunk-at-a-time checks agree with checking each value on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from crisiscomms.audience.import_rows import (
    ALLOWED_COLUMNS,
    check_chunk,
    check_email,
    check_lines,
    check_text,
)
from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient
from crisiscomms.core.database import make_engine

PLANTED = "known-token-an-attacker-chose-000000"


def _rows(engine: Engine) -> list[Recipient]:
    with Session(engine) as s:
        return list(s.exec(select(Recipient).order_by(Recipient.email)).all())


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    return make_engine(f"sqlite:///{tmp_path / 'data' / 'crisiscomms.db'}")


def _import(path: Path, *args: str) -> tuple[int, str]:
    from crisiscomms.cli import app

    result = CliRunner().invoke(app, ["recipients", "import", str(path), *args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("column", ["unsubscribe_token", "confirm_token", "consent", "id",
                                    "components", "confirmed_at", "suppression"])
def test_an_internal_column_is_refused_and_nothing_is_written(cli: Engine, tmp_path: Path,
                                                             column: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"email,name,{column}\nann@example.com,Ann,{PLANTED}\n")
    code, output = _import(path, "--skip-invalid")
    assert code == 2, output
    assert f"line 1: {'' if column == 'consent' else 'unknown column '}'{column}'" in output
    assert "nothing imported" in output
    assert _rows(cli) == []


def test_an_imported_recipient_gets_a_fresh_unguessable_token(engine: Engine,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email,unsubscribed\nann@example.com,no\nbob@example.com,yes\n")
    report = import_csv(engine, path)
    assert (report.imported, report.suppressed, report.rejected) == (2, 1, [])
    ann, bob = _rows(engine)
    assert len({ann.unsubscribe_token, bob.unsubscribe_token}) == 2
    assert all(len(r.unsubscribe_token or "") == 32 for r in (ann, bob))
    assert (ann.consent, bob.consent) == (True, False)
    assert ann.confirm_token is None


def test_every_bad_line_is_reported_by_number_and_nothing_is_written(cli: Engine,
                                                                    tmp_path: Path) -> None:
    """A field over 128 KiB (the csv module's own limit), a Latin-1 line, a bad address, a line
    with a field too many, an unterminated quote: each its own ``line N: reason``, through the
    CLI, no traceback, and the good lines are not written."""
    path = tmp_path / "r.csv"
    path.write_bytes(b"email,name\n"
                     b"ok@example.com,Ok\n"
                     b"big@example.com," + b"x" * (129 * 1024) + b"\n"
                     b"lat@example.com,Ren\xe9e\n"
                     b"not-an-address,Nope\n"
                     b"wide@example.com,Wide,extra\n"
                     b"ok2@example.com,Ok two\n"
                     b"q@example.com,\"unterminated\n")
    code, output = _import(path)
    assert code == 2, output
    assert "Traceback" not in output
    assert "line 3: the line is over 65,536 characters" in output
    assert "line 4: not UTF-8 text (byte 0xE9 at character 20;" in output
    assert "line 5: invalid email 'not-an-address'" in output
    assert "line 6: 3 fields, the header row has 2" in output
    assert "line 8: not valid CSV (unexpected end of data)" in output
    assert "line 2:" not in output and "line 7:" not in output
    assert "nothing imported: 5 of 7 line(s) rejected" in output
    assert _rows(cli) == []


def test_a_huge_line_without_an_end_is_skipped_unread(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"email\n" + b"a" * (6 << 20) + b"\nok@example.com\n")
    report = import_csv(engine, path, skip_invalid=True)
    assert [line for line, _ in report.rejected] == [2]
    assert [r.email for r in _rows(engine)] == ["ok@example.com"]


def test_duplicates_are_found_across_chunks_and_against_the_database(engine: Engine,
                                                                    tmp_path: Path) -> None:
    """More lines than one chunk (10,000): an address repeated 10,000 lines later, and one
    already imported, are named with the line they repeat; --skip-invalid keeps the first."""
    first = tmp_path / "first.csv"
    first.write_text("email\nold@example.com\n")
    assert import_csv(engine, first).imported == 1
    path = tmp_path / "r.csv"
    lines = [f"user{i:05d}@example.com" for i in range(12_000)]
    lines[11_000] = "USER00010@Example.com"  # line 11,002 repeats line 12
    lines[5] = "Old@example.com"  # line 7
    path.write_text("email\n" + "\n".join(lines) + "\n")
    report = import_csv(engine, path)
    assert report.rejected == [(7, "old@example.com is already a recipient"),
                               (11_002, "duplicate of line 12 (user00010@example.com)")]
    assert not report.written and len(_rows(engine)) == 1
    report = import_csv(engine, path, skip_invalid=True)
    assert report.written and report.imported == 11_998 == len(_rows(engine)) - 1


# -- the fast path agrees with the value-by-value rules -----------------------------------------

ADDRESSES = [
    "ann@example.com", "Ann.Lee+tag@Example.COM", "a..b@example.com", ".a@example.com",
    "a.@example.com", "x@localhost", "x@example", "x@test", "x@invalid", "x@-bad.com",
    "x@bad-.com", "x@exa_mple.com", "x@123.123.123.123", "x@[127.0.0.1]", "o'brien@example.ie",
    "user%host@example.com", "{weird}@example.com", "a" * 64 + "@example.com",
    "a" * 65 + "@example.com", "b@" + "a" * 63 + ".com", "b@" + "a" * 64 + ".com",
    "b@" + ".".join(["a" * 60] * 5) + ".com", "zoë@example.com", "x@bücher.de",
    "x@xn--bcher-kva.de", "x@example.com ", " x@example.com", "x @example.com",
    "\"quoted\"@example.com", "x@example..com", "x@sub.example.co.uk", "x@example.c",
    "x@example.123", "@example.com", "x@", "", "x@exa\nmple.com", "x@EXAMPLE.onion",
]
TEXTS = ["Ada", " Ada  Lovelace ", "Zoë O'Brien", "名前", "a\u200bb", "tab\there",
         "bel\x07", "rlo\u202eevil", "R" * 64, "R" * 65, "", "  ", "a\u200d\u200db",
         "👩\u200d💻", "nbsp\u00a0", "\u2028sep"]


def _one_by_one(header: list[str], fields: list[str]) -> tuple[object, ...] | str:
    try:
        email = check_email(fields[0])
        texts = [check_text(name, value) for name, value in zip(header[1:], fields[1:],
                                                                   strict=True)]
    except ValueError as exc:
        return str(exc)
    return (email, *texts)


@pytest.mark.parametrize("how", ["one by one", "chunked", "plain lines"])
def test_a_chunk_is_checked_exactly_as_each_line_on_its_own(how: str) -> None:
    """The column-by-column checks give what the value-by-value rules give; "plain lines" is
    a block of lines split on commas (``check_lines``, every case a line can hold unquoted)."""
    header = ["email", "name", "order_ref"]
    cases = [[a, t, t2] for a in ADDRESSES for t, t2 in zip(TEXTS, reversed(TEXTS),
                                                             strict=True)]
    if how == "plain lines":
        cases = [c for c in cases if not any(ch in v for v in c for ch in ",\"\n\r")]
    cases += [["ok@example.com", "Ada", "ORD-1"]] * 50  # chunks where everything passes
    cases += [["ok@example.com", "Ada", ""]] * 50  # empty values, nothing to strip
    cases += [["ok@example.com", "Zoë", "ORD-1"]] * 50  # not ASCII
    groups = [[c] for c in cases] if how == "one by one" else [cases[:400], cases[400:]]
    checked: dict[int, tuple[object, ...] | str] = {}
    line = 0
    for group in groups:
        if how == "plain lines":
            result = check_lines(header, line, [",".join(fields) for fields in group])
        else:
            result = check_chunk(header, [(line + i, fields) for i, fields in enumerate(group)])
        line += len(group)
        for row in result.rows:
            checked[int(row[0])] = (row[1], row[2], row[7])  # type: ignore[call-overload]
        checked.update(dict(result.rejected))
    for i, fields in enumerate(cases):
        assert checked[i] == _one_by_one(header, fields), fields


def test_the_allow_list_is_what_the_docs_say() -> None:
    assert set(ALLOWED_COLUMNS) == {"email", "name", "locale", "time_zone", "phone", "plan",
                                    "product", "order_ref", "lists", "unsubscribed",
                                    "suppressed"}
    assert set(ALLOWED_COLUMNS) - {"unsubscribed", "suppressed"} <= set(Recipient.model_fields)


def test_a_semicolon_separated_file_is_named_as_such(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email;name\nann@example.com;Ann\n")
    report = import_csv(engine, path)
    assert report.rejected == [(1, "the header row has no 'email' column (the file seems "
                                   "separated by ';': save it as comma-separated CSV)")]
    assert not report.written
