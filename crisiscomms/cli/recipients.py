"""Recipients: import (validated line by line) and export (CSV, safe to open in a spreadsheet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import err, out, recipients_app


@recipients_app.command("import")
def recipients_import_cmd(
    file: Annotated[Path, typer.Argument(help="CSV with a header row and an email column")],
    skip_invalid: Annotated[bool, typer.Option(
        help="Import the valid lines and report the rest (default: import nothing if any line "
             "is rejected)")] = False,
) -> None:
    """Import recipients from CSV, validating every address; rejects are reported by line."""
    from crisiscomms.audience.importer import import_csv
    from crisiscomms.core.database import init_db, make_engine

    engine = make_engine(common.load_settings().resolved_database_url)
    init_db(engine)
    report = common.run_or_exit(lambda: import_csv(engine, file, skip_invalid=skip_invalid))
    for line, reason in report.rejected[:200]:
        err.print(f"line {line}: {reason}", highlight=False, soft_wrap=True)
    if len(report.rejected) > 200:
        err.print(f"... and {len(report.rejected) - 200} more rejected lines")
    if not report.written:
        err.print(f"[bold red]nothing imported:[/] {len(report.rejected)} of {report.lines} "
                  "line(s) rejected (fix them, or --skip-invalid)")
        raise typer.Exit(2)
    out.print(f"imported {report.imported} recipient(s) ({report.suppressed} unsubscribed or "
              f"suppressed: kept, never sent to); rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)



@recipients_app.command("export")
def recipients_export_cmd(
    file: Annotated[Path | None, typer.Argument(
        help="Where to write the CSV (default: standard output)")] = None,
) -> None:
    """Export every recipient as CSV with the columns an import takes (no tokens); text a
    spreadsheet would run as a formula (=, +, -, @...) is written with a leading '."""
    import sys

    from crisiscomms.audience.export import export_csv

    engine = common.open_engine(common.load_settings())
    if file is None:
        export_csv(engine, sys.stdout)
        return
    try:
        with file.open("w", encoding="utf-8", newline="") as handle:
            count = export_csv(engine, handle)
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot write {file}: {exc.strerror}", highlight=False)
        raise typer.Exit(2) from None
    err.print(f"exported {count} recipient(s) to {file}", highlight=False)
