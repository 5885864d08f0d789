"""Serve the generated status page from its live directory (``crisiscomms serve``)."""

from __future__ import annotations

from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def serve_status_page(
    site: Path, *, host: str = "127.0.0.1", port: int = 8030
) -> ThreadingHTTPServer:
    """A static server on the live site; ``site`` is a symlink switched atomically per update,
    so each request reads either the previous build or the new one."""
    handler = partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
