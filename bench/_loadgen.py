"""A lean HTTP/1.1 load generator for the benches that measure a server's requests per second.

httpx spends more CPU per request than a small FastAPI app does (on 2 cores it tops out near
300 requests/s against a bare app answering 202), so a bench driven by it measures the client.
Here every request is serialised once, before the clock starts, and ``concurrency``
keep-alive connections write those bytes and read the status line, the headers and a
``Content-Length`` body: a few microseconds of client work per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence


def serialise(host: str, port: int, path: str, body: bytes,
              headers: Mapping[str, str]) -> bytes:
    """One ``POST`` as it goes on the wire (keep-alive, ``Content-Length`` set)."""
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()
              if name.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code (the body is read and dropped)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding":
            raise ConnectionError("chunked responses are not read by this load generator")
    if length:
        await reader.readexactly(length)
    return status


async def fire(host: str, port: int, wire: Sequence[bytes], concurrency: int, *,
               seconds: float | None = None, per_s: float | None = None
               ) -> tuple[float, list[float], dict[int, int]]:
    """Send every serialised request, ``concurrency`` at a time on keep-alive connections
    (with ``seconds``, stop taking new ones once they have passed; with ``per_s``, no faster
    than that in all: request k is not sent before ``k / per_s`` seconds, a held load
    instead of as fast as answers come); (seconds, per-request latencies in seconds, status
    counts)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(wire))
    connections = [await asyncio.open_connection(host, port)
                   for _ in range(min(concurrency, len(wire)))]

    async def one_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue and (stop_at is None or time.perf_counter() < stop_at):
            data = queue.pop()
            if per_s is not None:
                sent[0] += 1
                due = begun[0] + sent[0] / per_s
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            started = time.perf_counter()
            writer.write(data)
            status = await _response(reader)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    stop_at = None if seconds is None else started + seconds
    sent, begun = [0], [started]
    try:
        await asyncio.gather(*(one_client(r, w) for r, w in connections))
    finally:
        took = time.perf_counter() - started
        for _, writer in connections:
            writer.close()
    return took, latencies, statuses
