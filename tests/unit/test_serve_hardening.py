"""``crisiscomms serve`` faces the internet: timeouts, no file outside the live build, security
headers on every answer. Through the real server on loopback."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from crisiscomms.statuspage.page import StatusPage
from crisiscomms.statuspage.server import serve_status_page

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A real generated status page (``site`` is the symlink to the live build), a secret file
    beside it, and symlinks planted in the build: one out to the secret, one to a folder
    outside, one inside the build."""
    sp = StatusPage(tmp_path / "sp", page_name="Example Status",
                    page_url="https://status.example.com", clock=lambda: NOW)
    sp.rebuild()
    build = sp.site_path.resolve()
    (tmp_path / "secret.env").write_text("CRISISCOMMS_SENDGRID_API_KEY=SG.real\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "notes.txt").write_text("private")
    (build / "leak.txt").symlink_to(tmp_path / "secret.env")
    (build / "leak").symlink_to(tmp_path / "outside")
    (build / "home.html").symlink_to(build / "index.html")
    return sp.site_path


def _start(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    server = serve_status_page(site, port=0, timeout_s=0.5, request_deadline_s=1.5,
                               subscriptions_url="https://status-api.example.com/base")
    try:
        yield _start(server)
    finally:
        server.shutdown()
        server.server_close()


def test_a_half_sent_request_loses_its_connection_after_the_timeout(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: status\r\n")  # and never the blank line
        sock.settimeout(10)  # far above the server's 0.5 s: only the server's timeout ends it
        assert sock.recv(1024) == b""  # closed by the server, not answered


def test_a_request_trickled_byte_by_byte_is_cut_off_at_the_deadline(served: str) -> None:
    """Never silent for the 0.5 s timeout, the client would hold its thread for ever; the
    1.5 s deadline closes the connection while it is still sending."""
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: status\r\nX-Slow: ")
        closed = False
        for _ in range(100):  # up to 20 s of trickling: far past the deadline
            try:
                sock.sendall(b"a")
            except OSError:
                closed = True
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
        assert closed


@pytest.mark.parametrize("path", ["/leak.txt", "/leak/notes.txt", "/leak/", "/leak"])
def test_symlinks_out_of_the_build_are_not_followed(served: str, path: str) -> None:
    answer = httpx.get(served + path)
    assert answer.status_code == 404
    assert "SG.real" not in answer.text and "private" not in answer.text


def test_paths_climbing_out_of_the_site_are_not_found(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /../secret.env HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 404") and b"SG.real" not in answer


def test_a_symlink_inside_the_build_still_serves(served: str) -> None:
    assert httpx.get(served + "/home.html").status_code == 200


@pytest.mark.parametrize("path", ["/", "/index.html", "/api/v2/summary.json", "/history.atom",
                                  "/nope", "/leak.txt"])
def test_every_answer_carries_the_security_headers(served: str, path: str) -> None:
    headers = httpx.get(served + path).headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "form-action 'self' https://status-api.example.com" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["x-frame-options"] == "DENY"


def test_the_policy_lets_exactly_our_inline_scripts_run(served: str) -> None:
    """The page's own script (local times) is allowed by its hash; any other inline script,
    such as one smuggled into an update, would not be."""
    answer = httpx.get(served + "/")
    scripts = re.findall(r"<script>(.*?)</script>", answer.text, re.DOTALL)
    assert scripts
    allowed = re.search(r"script-src ([^;]+)", answer.headers["content-security-policy"])
    assert allowed is not None
    for body in scripts:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed.group(1).split()
    assert "'unsafe-inline'" not in allowed.group(1)
