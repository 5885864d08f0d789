"""Serve the generated status page from its live directory (``crisiscomms serve``)."""

from __future__ import annotations

import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOCAL_CACHE = "no-cache"
"""Served locally, every file is revalidated (a CDN in front uses the headers in
docs/status_page.md)."""


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the stdlib's own class attribute
        **SimpleHTTPRequestHandler.extensions_map,
        ".json": "application/json",
        ".atom": "application/atom+xml",
        ".rss": "application/rss+xml",
        ".html": "text/html; charset=utf-8",
    }

    def log_message(self, format: str, *args: Any) -> None:
        return

    def translate_path(self, path: str) -> str:
        """``/incidents/<id>`` (the address messages link to) serves ``incidents/<id>.html``,
        as GitHub Pages, Netlify or nginx ``try_files $uri $uri.html`` do."""
        local = super().translate_path(path)
        if not os.path.exists(local) and os.path.isfile(local + ".html"):
            return local + ".html"
        return local

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        """No directory listings: a folder without ``index.html`` is not found."""
        self.send_error(404, "File not found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", LOCAL_CACHE)
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.path.split("?", 1)[0].endswith(".json"):
            self.send_header("Access-Control-Allow-Origin", "*")
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
