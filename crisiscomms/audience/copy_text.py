"""Rows as PostgreSQL ``COPY ... FROM STDIN`` text: one block per chunk instead of one
``write_row`` call per row (psycopg's per-row path was a fifth of a PostgreSQL import's time).

Text format: columns separated by a tab, rows ended by a newline, NULL as ``\\N``; a backslash,
tab, newline or carriage return inside a value is escaped with a backslash
(https://www.postgresql.org/docs/current/sql-copy.html, "Text Format"). Booleans are ``t`` and
``f``; a datetime is written in ISO form with its offset (``timestamptz`` reads it back as the
same instant). Any other value is refused: a new column type needs its own rule here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import cast

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_value(value: object) -> str:
    """One value as COPY text reads it."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a naive datetime has no instant for timestamptz")
        return value.isoformat(" ")
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"no COPY text rule for {type(value).__name__}")


def copy_text(rows: Sequence[Sequence[object]]) -> str:
    """``rows`` as one block of COPY text (:func:`copy_columns` of their columns)."""
    return copy_columns(list(zip(*rows, strict=True)), len(rows))


@dataclass(frozen=True)
class Same:
    """One value on every row of a block (the import's time): converted once."""

    value: object


def _column(values: Sequence[object]) -> Sequence[str]:
    """One column's values as COPY text, unescaped (:func:`copy_columns` checks the block)."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return cast(Sequence[str], values)
    if kinds == {str, type(None)}:
        return ["\\N" if v is None else cast(str, v) for v in values]
    if kinds == {bool}:
        return ["t" if v else "f" for v in values]
    return [copy_value(v) for v in values]


def copy_columns(columns: Sequence[Sequence[object] | Same], rows: int) -> str:
    """``rows`` rows given column by column as one block of COPY text, as :func:`copy_text`
    writes them: each column converted in one pass, a :class:`Same` once, the rows joined,
    and the block checked once for a character that needs escaping (then every value is
    escaped on its own)."""
    if not rows:
        return ""
    texts = [repeat(copy_value(c.value), rows) if isinstance(c, Same) else _column(c)
             for c in columns]
    block = "\n".join(map("\t".join, zip(*texts, strict=True)))
    nulls = sum((rows if c.value is None else 0) if isinstance(c, Same) else c.count(None)
                for c in columns)
    if (block.count("\\") != nulls or "\r" in block
            or block.count("\t") != rows * (len(columns) - 1) or block.count("\n") != rows - 1):
        values = [repeat(c.value, rows) if isinstance(c, Same) else c for c in columns]
        block = "\n".join("\t".join(map(copy_value, row)) for row in zip(*values, strict=True))
    return block + "\n"
