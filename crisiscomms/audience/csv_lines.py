"""A CSV file read as a stream of records, each with the line it starts on and what is wrong
with it: a line that is not UTF-8, a line too long, a record the ``csv`` module cannot parse.

Nothing here raises on bad content: every problem belongs to a line, so an import can report
``line N: reason`` for each and go on. The file is read in blocks (memory does not grow with its
size), decoded a block at a time (one decode per MiB when it is valid UTF-8, line by line only
in a block that is not), and a line longer than :data:`MAX_LINE_CHARS` is skipped to its end
unread, however long it is.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

MAX_LINE_CHARS = 65_536
"""Longest line accepted (a recipient's line is a few hundred characters)."""
BLOCK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"

Record = tuple[int, list[str] | None, str | None]
"""``(first line, fields, problem)``: ``fields`` is None when the record could not be parsed."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class PhysicalLines:
    """The text lines of a binary CSV stream, counted; ``problems`` maps a line number to what
    is wrong with it. A bad line is replaced by text the CSV reader can go on from."""

    def __init__(self, handle: Readable, *, after_line: int = 0, strip_bom: bool = True) -> None:
        self.handle = handle
        self.count = after_line
        self.problems: dict[int, str] = {}
        self.strip_bom = strip_bom

    def __iter__(self) -> Iterator[str]:
        carry = b""
        first = self.strip_bom
        while True:
            block = self.handle.read(BLOCK_BYTES)
            if first:
                block = block.removeprefix(_BOM)
                first = False
            if not block:
                if carry:
                    yield from self._decode(carry)
                return
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry = block
                if len(carry) > MAX_LINE_CHARS * 4:  # no line end in sight: skip the line
                    carry = self._skip_to_line_end()
                    yield self._too_long()
                continue
            carry = block[cut:]
            yield from self._decode(block[:cut])

    def _skip_to_line_end(self) -> bytes:
        while block := self.handle.read(BLOCK_BYTES):
            end = block.find(b"\n")
            if end >= 0:
                return block[end + 1:]
        return b""

    def _too_long(self) -> str:
        self.count += 1
        self.problems[self.count] = (f"the line is over {MAX_LINE_CHARS:,} characters (a "
                                     "recipient's line is a few hundred); not read")
        return "\n"

    def _decode(self, data: bytes) -> Iterator[str]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            yield from self._decode_lines(data)
            return
        for line in io.StringIO(text, newline=""):
            if len(line) > MAX_LINE_CHARS:
                yield self._too_long()
                continue
            self.count += 1
            yield line

    def _decode_lines(self, data: bytes) -> Iterator[str]:
        """A block holding bytes that are not UTF-8: each line on its own, the bad ones
        reported (with the first bad byte) and passed on with the bytes replaced."""
        for raw in io.BytesIO(data):
            text, reason = _not_utf8(raw)
            if reason:  # before the line is read: the reader asks as soon as it has it
                self.mark(self.count + 1, reason)
            for line in io.StringIO(text, newline=""):
                if len(line) > MAX_LINE_CHARS:
                    yield self._too_long()
                    continue
                self.count += 1
                yield line

    def mark(self, line: int, problem: str) -> None:
        self.problems.setdefault(line, problem)


def _not_utf8(raw: bytes) -> tuple[str, str]:
    """The line decoded with the bad bytes replaced, and why it is refused."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
        reason = (f"not UTF-8 text (byte 0x{bad:02X} at character {column}; Latin-1 or "
                  "Windows-1252? save the file as \"CSV UTF-8\")")
        return raw.decode("utf-8", "replace"), reason
    return raw.decode("utf-8"), ""


def records(handle: Readable, *, after_line: int = 0,
            strip_bom: bool = True) -> Iterator[Record]:
    """``(first line, fields, problem)`` for each record of the stream, the header first;
    ``fields`` is None when the record could not be parsed. Blank lines are skipped. A stream
    that starts inside a file (:func:`blocks`) numbers its lines from ``after_line`` + 1."""
    lines = PhysicalLines(handle, after_line=after_line, strip_bom=strip_bom)
    reader = csv.reader(lines, strict=True)
    last = after_line
    while True:
        try:
            fields: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            fields = None
            problem: str | None = f"not valid CSV ({exc})"
        else:
            problem = None
        start, last = last + 1, after_line + reader.line_num
        if lines.problems:
            for line in range(start, last + 1):
                found = lines.problems.pop(line, None)
                if found is not None and problem is None:
                    problem = found
        if fields == [] and problem is None:
            continue
        yield start, fields, problem



@dataclass
class PlainBlock:
    """Lines that are each exactly one record whose fields are ``line.split(",")``: valid UTF-8,
    no quote, no carriage return but in a CRLF line end, no NUL, no blank line, none near
    :data:`MAX_LINE_CHARS`. The ``csv`` module reads each such line as that split."""

    first: int
    """The line number of ``lines[0]``."""
    lines: list[str]
    """Without their line ends."""


class _Rest:
    """What is left of a stream: ``pending`` (bytes already read), then the rest of ``handle``."""

    def __init__(self, pending: bytes, handle: Readable) -> None:
        self.pending = pending
        self.handle = handle

    def read(self, size: int = -1, /) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        return self.handle.read(size)


def _plain(data: bytes) -> list[str] | None:
    """The lines of ``data`` (whole lines, the last one ended) when they make a
    :class:`PlainBlock`; None when any needs the full reader."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    if '"' in text or "\x00" in text or "\n\n" in text or text.startswith("\n"):
        return None
    lines = text.split("\n")
    lines.pop()  # after the last line end
    if len(text) >= MAX_LINE_CHARS - 2 and max(map(len, lines)) >= MAX_LINE_CHARS - 2:
        return None  # near the limit (a CRLF end counts too): the reader decides
    return lines


def blocks(handle: Readable, *, chunk: int = 10_000) -> Iterator[PlainBlock | list[Record]]:
    """The stream, header first, as :class:`PlainBlock` s of about :data:`BLOCK_BYTES` while
    its lines are plain (a customer's export usually is, to its end), and from the first block
    that is not, as lists of up to ``chunk`` records read by :func:`records` (which numbers
    and reports every line exactly as it would have from the start).

    A plain block is split with ``str`` methods in a few calls instead of one reader step per
    line: the same fields, several times faster (``tests/unit/test_csv_blocks.py`` holds the
    two readers to the same records)."""
    line = 0
    carry = b""
    first = True
    while True:
        data = handle.read(BLOCK_BYTES)
        if first:
            data = data.removeprefix(_BOM)
            first = False
        if not data:
            if not carry:
                return
            data, carry = carry + b"\n", b""  # the last line, without its line end
        else:
            data = carry + data
            cut = data.rfind(b"\n") + 1
            data, carry = data[:cut], data[cut:]
        lines = _plain(data) if data else None
        if lines is None:
            stream = records(_Rest(data + carry, handle), after_line=line, strip_bom=False)
            while batch := list(itertools.islice(stream, chunk)):
                yield batch
            return
        yield PlainBlock(line + 1, lines)
        line += len(lines)
