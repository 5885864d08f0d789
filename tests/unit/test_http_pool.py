"""The channels' shared keep-alive clients: one per (base URL, timeout, redirects), and no
cookie jar shared between the destinations they serve."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crisiscomms.channels.http_pool import pooled_client


class _SetsCookies(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (self.headers.get("Cookie") or "none").encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "session=tenant-a; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SetsCookies)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_one_client_per_key() -> None:
    assert pooled_client(7.5) is pooled_client(7.5)
    assert pooled_client(7.5) is not pooled_client(8.5)
    assert pooled_client(7.5) is not pooled_client(7.5, follow_redirects=True)
    assert pooled_client(7.5, base_url="http://a.test") is not pooled_client(7.5)


def test_a_cookie_set_by_one_answer_is_never_sent_again(server: str) -> None:
    client = pooled_client(5.0)
    first = client.get(f"{server}/hook")
    assert first.headers["set-cookie"].startswith("session=")
    assert client.get(f"{server}/hook").text == "none"
    assert not list(client.cookies.jar)
