"""Recipients: import and validate."""

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

