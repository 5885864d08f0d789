"""Keep-alive HTTP clients shared by the channels of one process.

A new ``httpx.Client`` per send builds an SSL context and opens a new connection: py-spy on
the warm worker during ``bench/intake.py``'s acknowledgements put ``ssl.create_default_context``
at 10% of its CPU, from the Slack, Teams, webhook and Bluesky sends. One client per (base URL,
timeout, redirect policy) serves the whole process instead: thread-safe, pooled, and it keeps
no cookies (the destinations of one process never share state through a cookie jar).
"""

from __future__ import annotations

import http.cookiejar
import threading
import urllib.request

import httpx

_CLIENTS: dict[tuple[str, float, bool], httpx.Client] = {}
_LOCK = threading.Lock()
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Refuses every cookie a response sets."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


def pooled_client(timeout_s: float, *, base_url: str = "",
                  follow_redirects: bool = False) -> httpx.Client:
    """The process's keep-alive client for (``base_url``, ``timeout_s``, ``follow_redirects``);
    requests through it are thread-safe. Never close it: it lives as long as the process."""
    key = (base_url, timeout_s, follow_redirects)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = httpx.Client(
                base_url=base_url, timeout=timeout_s, limits=LIMITS,
                follow_redirects=follow_redirects,
                cookies=http.cookiejar.CookieJar(policy=_NoCookies()))
        return client
