"""Serve the generated status page from its live directory (``crisiscomms serve``).

Hardened for being reachable by anyone: every connection has a socket timeout (a client that
sends half a request and stops loses its thread after ``timeout_s``) and every request a
deadline (one that trickles a byte at a time is cut off after ``request_deadline_s``), a
request never reads outside the live build (the path is resolved, symlinks included, and must
stay inside the resolved ``site``), and every answer, error pages included, carries
:func:`security_headers`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import threading
from functools import cache, partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCAL_CACHE = "no-cache"
"""Served locally, every file is revalidated (a CDN in front uses the headers in
docs/status_page.md)."""
TIMEOUT_S = 10.0
"""Seconds a connection may stay silent (mid-request or idle between keep-alive requests)."""
REQUEST_DEADLINE_S = 30.0
"""Seconds one request may take in all, from waiting for it to the last byte of the answer:
a client trickling a byte now and then, never silent for ``TIMEOUT_S``, is cut off here."""
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_TEMPLATES_WITH_SCRIPTS = ("base.html.j2",)


@cache
def inline_script_hashes() -> tuple[str, ...]:
    """CSP ``'sha256-…'`` sources of the inline scripts our page templates hold (the local-time
    script of ``base.html.j2``: it contains no template expression, so the page carries it
    byte for byte)."""
    folder = resources.files("crisiscomms.statuspage") / "templates"
    found: list[str] = []
    for name in _TEMPLATES_WITH_SCRIPTS:
        for body in _INLINE_SCRIPT.findall((folder / name).read_text(encoding="utf-8")):
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            found.append(f"'sha256-{digest}'")
    return tuple(found)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(subscriptions_url: str | None = None) -> str:
    """The status page's policy: nothing loads from anywhere (no external script, style, font or
    image), only our own inline script (by hash) runs, inline styles are allowed (the page's one
    ``<style>`` and the uptime bars), the subscribe form may post only to the subscriptions
    app, and no other site may frame the page (clickjacking)."""
    form_action = " ".join(filter(None, ("'self'", _origin(subscriptions_url))))
    return "; ".join((
        "default-src 'none'",
        f"script-src {' '.join(inline_script_hashes())}",
        "style-src 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        f"form-action {form_action}",
        "frame-ancestors 'none'",
    ))


def security_headers(subscriptions_url: str | None = None) -> dict[str, str]:
    """The headers every page we serve carries; a CDN in front should set the same
    (docs/status_page.md). ``X-Frame-Options`` repeats ``frame-ancestors`` for old browsers."""
    return {
        "Content-Security-Policy": content_security_policy(subscriptions_url),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the stdlib's own class attribute
        **SimpleHTTPRequestHandler.extensions_map,
        ".json": "application/json",
        ".atom": "application/atom+xml",
        ".rss": "application/rss+xml",
        ".html": "text/html; charset=utf-8",
    }
    headers_to_send: dict[str, str] = {}  # noqa: RUF012 - set per server by serve_status_page
    site: str = ""

    request_deadline_s: float = REQUEST_DEADLINE_S

    def log_message(self, format: str, *args: Any) -> None:
        return

    def handle_one_request(self) -> None:
        """One request under a deadline: when it passes, the connection is shut down (the
        blocked read or write fails and the thread is free)."""
        timer = threading.Timer(self.request_deadline_s, self._cut_off)
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        except OSError:  # cut off at the deadline
            self.close_connection = True
        finally:
            timer.cancel()

    def _cut_off(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def translate_path(self, path: str) -> str:
        """The file under the live build: ``site`` (a symlink swapped per update) is resolved
        once per request and the whole request reads that build. The requested path is
        resolved too, symlinks included; anything that lands outside the build is not found.
        ``/incidents/<id>`` (the address messages link to) serves ``incidents/<id>.html``, as
        GitHub Pages, Netlify or nginx ``try_files $uri $uri.html`` do."""
        root = Path(self.site).resolve()
        self.directory = str(root)
        local = super().translate_path(path)
        if not os.path.exists(local) and os.path.isfile(local + ".html"):
            local += ".html"
        resolved = Path(local).resolve()
        if resolved != root and not resolved.is_relative_to(root):
            return str(root / ".outside-the-site")  # never exists: 404
        return str(resolved) + (os.sep if local.endswith(os.sep) else "")

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        """No directory listings: a folder without ``index.html`` is not found."""
        self.send_error(404, "File not found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", LOCAL_CACHE)
        for name, value in self.headers_to_send.items():
            self.send_header(name, value)
        if self.path.split("?", 1)[0].endswith(".json"):
            self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()


def serve_status_page(
    site: Path, *, host: str = "127.0.0.1", port: int = 8030, timeout_s: float = TIMEOUT_S,
    request_deadline_s: float = REQUEST_DEADLINE_S, subscriptions_url: str | None = None,
) -> ThreadingHTTPServer:
    """A static server on the live site; ``site`` is a symlink switched atomically per update,
    so each request reads either the previous build or the new one. ``subscriptions_url``
    (``Settings.subscriptions_url``) is where the page's subscribe form may post."""
    handler_class = type("StatusPageHandler", (_QuietHandler,), {
        "timeout": timeout_s, "request_deadline_s": request_deadline_s, "site": str(site),
        "headers_to_send": security_headers(subscriptions_url)})
    handler = partial(handler_class, directory=str(site))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
