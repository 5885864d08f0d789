"""CSV recipient import: addresses are stored lower-cased and compared lower-cased; personal
fields follow the text rule (core/text.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient
from crisiscomms.audience.subscriptions import normalise_email
from crisiscomms.core.database import migrate


def _emails(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted(s.exec(select(Recipient.email)).all())


def _csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "r.csv"
    path.write_text("email,name\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_addresses_are_stored_lower_cased_like_subscriptions(engine: Engine, tmp_path) -> None:
    report = import_csv(engine, _csv(tmp_path, "Bob.Smith@Example.COM,Bob", "ann@x.com,Ann"))
    assert report.written and report.imported == 2 and not report.rejected
    assert _emails(engine) == ["ann@x.com", "bob.smith@example.com"]
    assert normalise_email("Bob.Smith@Example.COM") in _emails(engine)


def test_a_case_variant_of_a_known_recipient_is_rejected(engine: Engine, tmp_path) -> None:
    assert import_csv(engine, _csv(tmp_path, "bob@x.com,Bob")).imported == 1
    report = import_csv(engine, _csv(tmp_path, "ok@x.com,Ok", "BOB@X.com,Bob again"))
    assert report.rejected == [(3, "bob@x.com is already a recipient")]
    assert not report.written and _emails(engine) == ["bob@x.com"]


def test_case_variants_within_one_file_are_duplicates(engine: Engine, tmp_path) -> None:
    report = import_csv(engine, _csv(tmp_path, "Bob@x.com,A", "bob@X.COM,B"),
                        skip_invalid=True)
    assert report.rejected == [(3, "duplicate of line 2 (bob@x.com)")]
    assert _emails(engine) == ["bob@x.com"]


def test_a_mixed_case_address_stored_before_is_found_after_migration(tmp_path) -> None:
    """``Bob@x.com`` imported by an older version: the data migration folds it, and a new
    ``bob@x.com`` is then recognised as the same recipient."""
    from crisiscomms.core.database import init_db, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "baseline")  # the schema before the data migration
    with Session(engine) as s:
        s.execute(insert(Recipient), [{"email": "Bob@x.com", "unsubscribe_token": "t1"},
                                      {"email": "Ann@x.com", "unsubscribe_token": "t2"},
                                      {"email": "ann@x.com", "unsubscribe_token": "t3"}])
        s.commit()
    init_db(engine)
    # Ann has a lower-case twin already: left for a human to merge, never a second twin
    assert _emails(engine) == ["Ann@x.com", "ann@x.com", "bob@x.com"]
    report = import_csv(engine, _csv(tmp_path, "bob@x.com,Bob", "ANN@X.COM,Ann"))
    assert report.rejected == [(2, "bob@x.com is already a recipient"),
                               (3, "ann@x.com is already a recipient")]
    engine.dispose()


def test_personal_fields_follow_the_text_rule_naming_line_and_column(engine: Engine,
                                                                    tmp_path: Path) -> None:
    """A name, product or order reference holding a control character, a bidi override or a
    line break is rejected with its line and column, and nothing is imported."""
    path = tmp_path / "r.csv"
    path.write_text("email,name,product,order_ref\n"
                    "ok@x.com,Ada,Kettle,ORD-1\n"
                    "bel@x.com,Bob\x07,Kettle,ORD-2\n"
                    "rlo@x.com,Cy,Kettle\u202eelttek,ORD-3\n"
                    "nl@x.com,Dee,Kettle,\"ORD-4\nBcc: x\"\n", encoding="utf-8")
    report = import_csv(engine, path)
    assert not report.written and _emails(engine) == []
    assert [(line, reason.split(":", 1)[0]) for line, reason in report.rejected] == [
        (3, "name"), (4, "product"), (5, "order_ref")]  # the line the record starts on
    assert "U+0007 (BEL)" in report.rejected[0][1]
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE)" in report.rejected[1][1]
    assert "one line" in report.rejected[2][1]


def test_zero_width_characters_are_stripped_from_personal_fields(engine: Engine,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email,name,order_ref\nann@x.com,\u200bAnn\ufeff Lee ,ORD\u200b-1\t\n",
                    encoding="utf-8")
    assert import_csv(engine, path).imported == 1
    with Session(engine) as s:
        row = s.exec(select(Recipient)).one()
    assert (row.name, row.order_ref) == ("Ann Lee", "ORD-1")


def test_a_file_that_is_not_utf8_is_refused_not_a_crash(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"email,name\nann@x.com,Ann\nbob@x.com,B\xffob\n")
    report = import_csv(engine, path)
    assert [(line, reason.split(" (")[0]) for line, reason in report.rejected] == [
        (3, "not UTF-8 text")]
    assert not report.written and _emails(engine) == []


def test_cli_import_refuses_a_control_character_naming_line_and_column(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from crisiscomms.cli import app
    from crisiscomms.core.database import make_engine

    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    path = tmp_path / "r.csv"
    path.write_text("email,name\nann@x.com,Ann\nbob@x.com,\x1b[31mBob\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["recipients", "import", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "line 3: name: holds a control character U+001B (ESC)" in text
    assert "nothing imported" in text
    assert _emails(make_engine(f"sqlite:///{tmp_path / 'data' / 'crisiscomms.db'}")) == []


def test_a_personal_field_longer_than_its_column_is_rejected(engine: Engine,
                                                             tmp_path: Path) -> None:
    """SQLite would store it; PostgreSQL would fail the whole insert half-way."""
    path = tmp_path / "r.csv"
    path.write_text(f"email,order_ref\nann@x.com,{'R' * 65}\nbob@x.com,{'R' * 64}\n",
                    encoding="utf-8")
    report = import_csv(engine, path)
    assert report.rejected == [
        (2, "order_ref: 65 characters, over the 64 a recipient's may have")]
    assert not report.written and _emails(engine) == []
