"""The block reader (``csv_lines.blocks``) yields exactly the records the record reader
(``csv_lines.records``) does, line numbers and problems included, whatever the bytes: plain
blocks are split with ``str`` methods, and everything else falls back to the record reader from
that block on."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisiscomms.audience import csv_lines
from crisiscomms.audience.csv_lines import PlainBlock, Record, blocks, records

PIECES = [b"a@example.com", b"Ann", b"", b",", b"\n", b"\r\n", b"\r", b'"', b'"q,"', b" ",
          b"\xef\xbb\xbf", b"\xe9", b"\x00", b"Zo\xc3\xab", b"\xe5\x90\x8d", b"x" * 40]


def via_blocks(data: bytes) -> list[Record]:
    out: list[Record] = []
    for block in blocks(io.BytesIO(data), chunk=3):
        if isinstance(block, PlainBlock):
            out += [(block.first + i, line.split(","), None) for i, line in enumerate(block.lines)]
        else:
            assert 0 < len(block) <= 3
            out += block
    return out


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 64 bytes and lines of at most 48 characters, so that a few lines span blocks
    and some are too long."""
    monkeypatch.setattr(csv_lines, "BLOCK_BYTES", 64)
    monkeypatch.setattr(csv_lines, "MAX_LINE_CHARS", 48)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_blocks_read_what_records_read(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert via_blocks(data) == list(records(io.BytesIO(data)))


@pytest.mark.parametrize("data", [
    b"email,name\r\na@example.com,Ann\r\nb@example.com,Bo\r\n",  # Excel's CSV UTF-8: CRLF
    b"\xef\xbb\xbfemail\na@example.com\nb@example.com",  # BOM, no last line end
    b"email,name\n" + b"a@example.com,Ann\n" * 20,
])
def test_a_plain_file_is_read_in_plain_blocks_to_its_end(data: bytes) -> None:
    read = list(blocks(io.BytesIO(data)))
    assert all(isinstance(block, PlainBlock) for block in read)
    assert via_blocks(data) == list(records(io.BytesIO(data)))


def test_a_quote_midway_switches_to_the_record_reader_from_its_block() -> None:
    data = b"email,name\n" + b"a@example.com,Ann\n" * 10 + b'b@example.com,"Bo, Jr"\n'
    kinds = [isinstance(block, PlainBlock) for block in blocks(io.BytesIO(data))]
    assert kinds[0] and not kinds[-1] and kinds == sorted(kinds, reverse=True)
    assert via_blocks(data)[-1] == (12, ["b@example.com", "Bo, Jr"], None)
