"""COPY text for the PostgreSQL import: the fast block path writes exactly what escaping each
value on its own writes (``audience/copy_text.py``); the import stores such values unchanged
on PostgreSQL (``tests/integration/test_import_set_aside.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from crisiscomms.audience.copy_text import Same, copy_columns, copy_text, copy_value

NOW = datetime(2026, 12, 2, 3, 4, 5, 678_901, tzinfo=UTC)
VALUES = ["ann@example.com", "Zoë", "\\N", "a\\b", "tab\there", "line\nbreak", "cr\rhere", "",
          None, True, False, NOW, 7, "back\\\\slash", "\\", "名前"]


def reference(rows: list[tuple[object, ...]]) -> str:
    return "".join("\t".join(copy_value(v) for v in row) + "\n" for row in rows)


@pytest.mark.parametrize("value", VALUES)
def test_the_block_is_each_value_escaped_on_its_own(value: object) -> None:
    rows = [("x@example.com", None, value, True, NOW)] * 3 + [("y@example.com", "Bo", None,
                                                               False, NOW)]
    assert copy_text(rows) == reference(rows)
    assert copy_columns(list(zip(*rows, strict=True)), len(rows)) == reference(rows)


def test_escapes_follow_the_copy_text_format() -> None:
    assert copy_text([("a\\b", "t\tn\nr\r", None, "\\N")]) == "a\\\\b\tt\\tn\\nr\\r\t\\N\t\\\\N\n"
    assert copy_value(True) + copy_value(False) == "tf"
    assert copy_value(NOW) == "2026-12-02 03:04:05.678901+00:00"
    assert copy_value(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-01-01 00:00:00+02:00")
    assert copy_text([]) == ""


def test_values_without_a_rule_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        copy_value(datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="bytes"):
        copy_value(b"raw")


@pytest.mark.parametrize("value", VALUES)
def test_a_value_on_every_row_is_written_as_rows_are(value: object) -> None:
    rows = [("x@example.com", value, True, NOW), ("y@example.com", value, False, NOW)]
    assert copy_columns([["x@example.com", "y@example.com"], Same(value), [True, False],
                         Same(NOW)], 2) == reference(rows)
    assert copy_columns([[], Same(NOW)], 0) == copy_text([]) == ""
