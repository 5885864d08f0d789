"""Shared machinery of the provider emulators: HTTP server, JSON helpers, control endpoints.

An emulator is an `EmulatorServer` subclass that routes provider requests, authenticates them
and records what it accepted. This module runs the loopback server (HTTP/1.1 keep-alive, one
daemon thread per connection), applies fault injection, counts requests and serves the control
endpoints every emulator has:

- ``GET  /_emulator/received?key=K&limit=N``  records, substitutions applied
- ``GET  /_emulator/stats``                   counters
- ``GET  /_emulator/keys/<key>``              ``{"key", "accepted", "count"}``
- ``GET  /_emulator/addresses``               distinct addresses received, those repeated
- ``GET  /_emulator/faults``                  current faults
- ``POST /_emulator/faults``                  replace faults (JSON of `Faults` fields)
- ``POST /_emulator/reset``                   clear records, counters and faults
"""

from __future__ import annotations

import contextlib
import enum
import json
import socket
import struct
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

from crisiscomms.testing.emulators.faults import FaultInjector, Faults, Outcome, RateWindow

CONTROL_PREFIX = "/_emulator/"
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
_POLL_INTERVAL_S = 0.05
_DRAIN_CHUNK = 1024 * 1024

Headers = tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------------------------
# JSON helpers


def json_bytes(value: object) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_json(body: bytes) -> Any:
    """Parse a JSON request body; raises ValueError on invalid JSON or encoding."""
    return json.loads(body)


def iso_utc(epoch_s: float) -> str:
    """``2025-01-31T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------
# Requests and replies


@dataclass(frozen=True)
class Request:
    """One HTTP request as the emulator sees it."""

    method: str
    path: str
    """Path without the query string, still percent-encoded."""
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    too_large: bool = False
    """The body exceeded the emulator's size limit and was discarded."""

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def query_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class Drop(enum.Enum):
    """How to end a connection without answering."""

    CLOSE = "close"
    RESET = "reset"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Headers = ()
    content_type: str = "application/json"
    drop: Drop | None = None
    declared_length: int | None = None
    """A ``Content-Length`` larger than ``body``: the body is cut short and the connection
    closed (a truncated response)."""

    def with_headers(self, extra: Headers) -> Reply:
        if not extra:
            return self
        return Reply(self.status, self.body, self.headers + extra, self.content_type, self.drop,
                     self.declared_length)


GARBAGE_BODY = (b"<html><head><title>502 Bad Gateway</title></head><body>\x00\xff upstream "
                b"sent an invalid response</body></html>")
"""What a confused proxy answers: HTML with stray bytes, not the provider's JSON."""


def garbage(reply: Reply) -> Reply:
    """``reply``'s success status with a body that is not JSON (the provider's headers kept)."""
    return Reply(reply.status, GARBAGE_BODY, reply.headers, "text/html")


def truncated(reply: Reply) -> Reply:
    """``reply`` cut short: the declared length exceeds what is sent, then the line closes."""
    body = reply.body or b'{"data":{"id":"'
    return Reply(reply.status, body[: max(1, len(body) // 2)], reply.headers,
                 reply.content_type, declared_length=len(body) + 64)


def json_reply(status: int, value: object, headers: Headers = ()) -> Reply:
    return Reply(status, json_bytes(value), headers)


def dropped(how: Drop) -> Reply:
    return Reply(0, drop=how)


# --------------------------------------------------------------------------------------------
# The HTTP layer


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._to_reset: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def mark_reset(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conn_lock:
            self._to_reset.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
            reset = request in self._to_reset
            self._to_reset.discard(request)
        if reset:
            request.close()  # SO_LINGER 0: the peer sees a TCP reset
        else:
            super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open keep-alive connection (a stopped emulator answers nothing)."""
        with self._conn_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms Nagle stall
    server_version = "crisiscomms-emulator"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        try:
            body, too_large = self._read_body(emulator.max_body_bytes)
        except ValueError:
            self.close_connection = True
            self._write(json_reply(400, {"error": "bad Content-Length or chunked encoding"}))
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            too_large=too_large,
        )
        reply = emulator.handle(request)
        if reply.drop is not None:
            self.close_connection = True
            if reply.drop is Drop.RESET:
                self.server.mark_reset(self.connection)
            return
        self._write(reply)

    def _read_body(self, limit: int) -> tuple[bytes, bool]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(_DRAIN_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
            return b"", True
        return self.rfile.read(length), False

    def _read_chunked(self, limit: int) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk_size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if chunk_size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunk = self.rfile.read(chunk_size)
            self.rfile.readline(3)
            size += len(chunk)
            if size <= limit:
                parts.append(chunk)
        if size > limit:
            return b"", True
        return b"".join(parts), False

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.body:
            self.send_header("Content-Type", reply.content_type)
        if reply.declared_length is not None:
            self.close_connection = True  # the client waits for bytes that never come
        self.send_header("Content-Length", str(reply.declared_length or len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)


# --------------------------------------------------------------------------------------------
# The emulator base


Route = Callable[[Request], Reply]


@dataclass
class _Counters:
    requests: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


class EmulatorServer(ABC):
    """A provider emulator on loopback. Subclasses implement the provider API and records."""

    channel: ClassVar[str]
    max_body_bytes: ClassVar[int] = DEFAULT_MAX_BODY_BYTES

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._injector = FaultInjector(faults or Faults())
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._counter_lock = threading.Lock()
        self._counters = _Counters()
        self._lifecycle_lock = threading.Lock()
        self._foreground: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def bind(self) -> None:
        """Bind the listening socket (port 0: a free port, kept for later restarts)."""
        with self._lifecycle_lock:
            if self._httpd is not None:
                return
            self._stopping.clear()
            self._httpd = _HTTPServer((self._host, self._port), self)
            self._port = int(self._httpd.server_address[1])

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        self.bind()
        with self._lifecycle_lock:
            httpd = self._httpd
            if httpd is None or self._thread is not None:
                return self
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name=f"{type(self).__name__}:{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` is called (for the CLI)."""
        self.bind()
        with self._lifecycle_lock:
            httpd = self._httpd
            if httpd is None or self._thread is not None:
                raise RuntimeError("already serving in a background thread")
            self._foreground = threading.current_thread()
        try:
            httpd.serve_forever(poll_interval=_POLL_INTERVAL_S)
        finally:
            with self._lifecycle_lock:
                self._foreground = None
            self.stop()

    def stop(self) -> None:
        """Stop serving and cut open connections. Records are kept; `start()` may follow."""
        with self._lifecycle_lock:
            httpd, thread, foreground = self._httpd, self._thread, self._foreground
            self._httpd, self._thread = None, None
        if httpd is None:
            return
        self._stopping.set()  # wake hung (timeout-fault) handlers
        if thread is not None:
            httpd.shutdown()
            thread.join(timeout=5)
        elif foreground is not None and foreground is not threading.current_thread():
            httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123`` (the port is known after start)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- what subclasses provide ----------------------------------------------------------

    @abstractmethod
    def route(self, request: Request) -> Route | None:
        """The provider handler for this request, or None (404)."""

    @abstractmethod
    def authenticate(self, request: Request) -> Reply | None:
        """None when the request is authorised, else the provider's 401."""

    @abstractmethod
    def rate_limited_reply(self, window: RateWindow) -> Reply:
        """The provider's 429 with its rate-limit headers."""

    @abstractmethod
    def error_reply(self, status: int) -> Reply:
        """An injected provider error (5xx or other 4xx)."""

    @abstractmethod
    def not_found_reply(self, request: Request) -> Reply: ...

    @abstractmethod
    def too_large_reply(self) -> Reply: ...

    @abstractmethod
    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        """Every recorded recipient-message (matching ``key``), oldest first."""

    @abstractmethod
    def key_count(self, key: str) -> int:
        """How many recipient-messages were accepted under ``key``."""

    @abstractmethod
    def record_stats(self) -> dict[str, int]:
        """accepted_messages, recipients, duplicates, distinct_keys (and any extras)."""

    @abstractmethod
    def clear_records(self) -> None: ...

    def control(self, request: Request, name: str) -> Reply | None:
        """An emulator's own control endpoints (``/_emulator/<name>``); None: not one."""
        return None

    def success_headers(self, window: RateWindow | None) -> Headers:
        """Headers added to provider answers that were not rate-limited (default none)."""
        return ()

    # ---- Python API -----------------------------------------------------------------------

    def received(self, key: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded recipient-messages (optionally only ``key``), substitutions applied."""
        return list(islice(self.iter_received(key), limit))

    def accepted(self, key: str) -> bool:
        """Did the provider accept anything under idempotency key ``key``?"""
        return self.key_count(key) > 0

    def addresses(self) -> dict[str, Any]:
        """Identity counts: ``{"distinct": n, "repeated": [addresses received more than once,
        under any key], "addresses": [every distinct address]}`` (``GET /_emulator/addresses``;
        benchmarks compare them with the recipients they meant to reach)."""
        counts: Counter[str] = Counter(
            str(r.get("to") or r.get("id")).lower() for r in self.iter_received())
        return {"distinct": len(counts), "repeated": sorted(a for a, n in counts.items() if n > 1),
                "addresses": sorted(counts)}

    def key_status(self, key: str) -> dict[str, Any]:
        count = self.key_count(key)
        return {"key": key, "accepted": count > 0, "count": count}

    def stats(self) -> dict[str, Any]:
        with self._counter_lock:
            requests = self._counters.requests
            rejected = {str(k): v for k, v in sorted(self._counters.rejected.items())}
            dropped_counts = dict(sorted(self._counters.dropped.items()))
        return {
            "requests": requests,
            **self.record_stats(),
            "rejected": rejected,
            "dropped": dropped_counts,
        }

    @property
    def faults(self) -> Faults:
        return self._injector.current()

    def set_faults(self, faults: Faults) -> None:
        self._injector.replace(faults)

    def reset(self) -> None:
        """Clear records, counters and faults."""
        self._injector.replace(Faults())
        with self._counter_lock:
            self._counters = _Counters()
        self.clear_records()

    def export_jsonl(self, path: str | Path) -> int:
        """Write one JSON object per received recipient-message; returns how many."""
        count = 0
        with Path(path).open("w", encoding="utf-8") as out:
            for record in self.iter_received():
                out.write(json.dumps(record, ensure_ascii=False))
                out.write("\n")
                count += 1
        return count

    # ---- request handling -----------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        reply = self._provider(request)
        with self._counter_lock:
            if reply.drop is None and reply.status >= 400:
                self._counters.rejected[str(reply.status)] += 1
        return reply

    def _provider(self, request: Request) -> Reply:
        with self._counter_lock:
            self._counters.requests += 1
        faults = self._injector.current()
        if faults.latency_ms > 0:
            self._stopping.wait(faults.latency_ms / 1000.0)
        handler = self.route(request)
        if handler is None:
            return self.not_found_reply(request)
        if request.too_large:
            return self.too_large_reply()
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        decision = self._injector.decide()
        outcome = decision.outcome
        if outcome is Outcome.RATE_LIMITED:
            assert decision.window is not None
            return self.rate_limited_reply(decision.window)
        if outcome is Outcome.ERROR:
            assert decision.status is not None
            if decision.status == 429:
                return self.rate_limited_reply(decision.window or self._injector.window_now())
            return self.error_reply(decision.status)
        if outcome is Outcome.TIMEOUT:
            self._count_drop("timeout")
            self._stopping.wait(faults.hang_s)
            return dropped(Drop.CLOSE)
        if outcome is Outcome.RESET:
            self._count_drop("reset")
            return dropped(Drop.RESET)
        reply = handler(request)
        if outcome is Outcome.LOST_RESPONSE and 200 <= reply.status < 300:
            self._count_drop("lost_response")
            if faults.lost_response_delay_s > 0:
                self._stopping.wait(faults.lost_response_delay_s)
            return dropped(Drop.CLOSE)
        if outcome in (Outcome.GARBAGE, Outcome.TRUNCATED) and 200 <= reply.status < 300:
            self._count_drop(outcome.value)
            return garbage(reply) if outcome is Outcome.GARBAGE else truncated(reply)
        return reply.with_headers(self.success_headers(decision.window))

    def _count_drop(self, kind: str) -> None:
        with self._counter_lock:
            self._counters.dropped[kind] += 1

    def _control(self, request: Request) -> Reply:
        name = request.path[len(CONTROL_PREFIX) :]
        method = request.method
        if method == "GET" and name == "stats":
            return json_reply(200, self.stats())
        if method == "GET" and name == "received":
            key = request.query_one("key")
            limit_text = request.query_one("limit")
            try:
                limit = int(limit_text) if limit_text else None
            except ValueError:
                return json_reply(400, {"error": "limit must be an integer"})
            if limit is not None and limit < 0:
                return json_reply(400, {"error": "limit must not be negative"})
            return json_reply(200, self.received(key or None, limit))
        if method == "GET" and name == "addresses":
            return json_reply(200, self.addresses())
        if method == "GET" and name.startswith("keys/") and len(name) > len("keys/"):
            return json_reply(200, self.key_status(unquote(name[len("keys/") :])))
        if name == "faults" and method == "GET":
            return json_reply(200, self.faults.to_dict())
        if name == "faults" and method == "POST":
            try:
                faults = Faults.from_dict(parse_json(request.body) if request.body else {})
            except (ValueError, TypeError) as exc:
                return json_reply(400, {"error": str(exc)})
            self.set_faults(faults)
            return json_reply(200, faults.to_dict())
        if name == "reset" and method == "POST":
            self.reset()
            return json_reply(200, {"reset": True})
        extra = self.control(request, name)
        if extra is not None:
            return extra
        return json_reply(404, {"error": f"no control endpoint {method} {request.path}"})
