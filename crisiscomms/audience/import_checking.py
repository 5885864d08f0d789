"""The recipient import's reading and checking, a chunk at a time: in this process, or for a
large file in a second one while this one writes (the machine's other core).

Both paths run the same code (:func:`checked_chunks`: :mod:`.csv_lines` reads,
:func:`~.import_rows.check_chunk` checks) and hand the writer the same :class:`CheckedChunk` in
the same order, so a line is refused, or written, exactly as before; only where the work runs
changes. The second process (``python -m`` this module: a fresh interpreter, no state of this one
copied, no database connection crosses) reads the file itself from the line after the header,
checks each chunk and passes it back pickled through a pipe into a queue of a few chunks: the
checker waits while the writer is behind, so memory stays a few chunks whatever the file's
size. Every :data:`SHARE`-th plain block comes back unchecked, as its lines, and the importing
process checks it between two writes, so that neither process waits for the other. It is
stopped when the import ends for any reason, and an error in it, or its death, stops the
import (whose transaction is then rolled back: nothing written).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from crisiscomms.audience.csv_lines import PlainBlock, Record, blocks
from crisiscomms.audience.import_rows import Checked, check_chunk, check_lines
from crisiscomms.core.errors import CrisisCommsError

CHUNK = 10_000
"""Lines checked and written together."""
MIN_LINES = 50_000
"""Below this a second process costs more (its start: an interpreter and these imports) than
it saves."""
QUEUE_CHUNKS = 2
"""Checked chunks waiting for the writer, at most (the checker waits when it is ahead)."""
SHARE = 4
"""Every fourth plain block is checked by the importing process itself, the rest by the second
one: writing a block into SQLite takes about half as long as checking it (and the checker
pickles what it checked), so the writer would otherwise wait for the checker a third of the
time (measured: ``docs/scaling.md``)."""
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_POLL_S = 0.2
_ENDED = object()
"""The receiving thread's word that the process ended without its last chunk."""

class CheckingError(CrisisCommsError):
    """The checking process failed or died: the import stops and writes nothing."""


@dataclass
class CheckedChunk(Checked):
    """A chunk as :func:`~.import_rows.check_chunk` checked it (``rejected`` holds reading
    problems too, in line order), and how many lines of recipients were read for it."""

    read: int = 0


def _checked_records(batch: list[Record], header: Sequence[str]) -> CheckedChunk:
    good = [(line, fields) for line, fields, problem in batch
            if problem is None and fields is not None]
    rejected = [] if len(good) == len(batch) else [
        (line, problem or "not valid CSV") for line, fields, problem in batch
        if problem is not None or fields is None]
    checked = check_chunk(header, good)
    return CheckedChunk(checked.lines, checked.values, sorted(rejected + checked.rejected),
                        len(batch))


def _blocks(path: Path) -> Iterator[PlainBlock | list[Record]]:
    """The blocks of ``path`` (:func:`~.csv_lines.blocks`) without its header line, empty ones
    left out."""
    with path.open("rb") as handle:
        header_read = False
        for block in blocks(handle, chunk=CHUNK):
            if not header_read:
                header_read = True
                if isinstance(block, PlainBlock):
                    block = PlainBlock(block.first + 1, block.lines[1:])
                else:
                    block = block[1:]
            if block.lines if isinstance(block, PlainBlock) else block:
                yield block


def check_block(block: PlainBlock | list[Record], header: Sequence[str]) -> CheckedChunk:
    """One block checked: a plain block column by column, straight from its lines; records
    as :func:`~.import_rows.check_chunk` takes them."""
    if isinstance(block, PlainBlock):
        checked = check_lines(header, block.first, block.lines)
        return CheckedChunk(checked.lines, checked.values, checked.rejected, len(block.lines))
    return _checked_records(block, header)


def checked_chunks(path: Path, header: Sequence[str]) -> Iterator[CheckedChunk]:
    """Every record of ``path`` after the header, read a block at a time
    (:func:`~.csv_lines.blocks`) and checked: a plain block column by column, straight from its
    lines; from the first block that is not, :data:`CHUNK` records at a time."""
    for block in _blocks(path):
        yield check_block(block, header)


def _check_file(path: str, header: list[str], share: int, out: BinaryIO) -> None:
    """The checking process: the file's chunks into ``out`` (pickled, in order), then None; or
    the error's text. With ``share``, every ``share``-th plain block goes out unchecked, as
    its lines, for the receiver to check (:func:`checked_elsewhere`)."""
    gc.disable()  # as in the writer: short-lived tuples, no cycles
    try:
        for at, block in enumerate(_blocks(Path(path)), start=1):
            if share and at % share == 0 and isinstance(block, PlainBlock):
                pickle.dump(block, out, _PROTOCOL)
                continue
            chunk = check_block(block, header)  # sent as a tuple: this is __main__
            pickle.dump((chunk.lines, chunk.values, chunk.rejected, chunk.read), out, _PROTOCOL)
        pickle.dump(None, out, _PROTOCOL)
    except BaseException:  # reported to the importer, which stops
        pickle.dump(traceback.format_exc(limit=3), out, _PROTOCOL)
    out.flush()


def checked_elsewhere(path: Path, header: Sequence[str], *,
                      share: int = 0) -> Iterator[CheckedChunk]:
    """:func:`checked_chunks` of ``path`` computed by a second process, in order; with
    ``share``, every ``share``-th plain block is checked here instead, by the caller's thread
    as it asks for the chunk (:data:`SHARE`).

    The process is ``python -m crisiscomms.audience.import_checking`` (never a re-import of the
    caller's own script, as multiprocessing's ``spawn`` would do); its chunks come back pickled
    through its stdout. A thread of ours unpickles them into a queue of :data:`QUEUE_CHUNKS`,
    so the checker works ahead while this thread waits for the database (a pipe alone holds
    64 KiB: a sixteenth of a chunk)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    worker = subprocess.Popen(
        [sys.executable, "-m", __name__, str(path), json.dumps(list(header)), str(share)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    pipe = worker.stdout
    assert pipe is not None
    ready: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()

    def offer(item: object) -> None:
        """Hand ``item`` to the writer, waiting for room unless the import stops."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def receive() -> None:
        try:
            while not stop.is_set():
                item = pickle.load(pipe)
                offer(item)
                if item is None or isinstance(item, str):
                    return
        except Exception:  # the process died (EOF), or sent what cannot be read: it failed
            offer(_ENDED)

    receiver = threading.Thread(target=receive, name="crisiscomms-import-receive", daemon=True)
    receiver.start()
    try:
        while True:
            item = ready.get()
            if item is _ENDED:
                raise CheckingError(f"the checking process stopped (exit code "
                                    f"{_exit_code(worker)}) before the end of {path.name}")
            if item is None:
                return
            if isinstance(item, str):
                raise CheckingError(f"checking {path.name} failed: {item.strip()}")
            if isinstance(item, PlainBlock):
                yield check_block(item, header)
                continue
            yield CheckedChunk(*cast(tuple[Any, ...], item))
    finally:
        stop.set()
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        receiver.join()
        pipe.close()


def _exit_code(worker: subprocess.Popen[bytes]) -> int:
    """The checker's exit code; a checker still running (what it sent could not be read, and
    it may be blocked writing the next chunk) is killed first."""
    try:
        return worker.wait(timeout=_POLL_S * 5)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


def use_second_process(lines: int) -> bool:
    """A second process for a file of about ``lines`` lines? Not below :data:`MIN_LINES`, never
    from a daemonic process (which may not start children), nor from an embedded interpreter
    that cannot name its own executable."""
    return (lines >= MIN_LINES and bool(sys.executable)
            and not multiprocessing.current_process().daemon)


if __name__ == "__main__":  # the checking process: python -m ... PATH HEADER_JSON SHARE
    _check_file(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.stdout.buffer)
