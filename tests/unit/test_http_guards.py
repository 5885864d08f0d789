"""The HTTP guards the public apps share: the bounded body reader (``api/body.py``), keyed
rate limits (``api/throttle.py``), the bounded work queue (``api/work_queue.py``) and the
security headers (``api/headers.py``). Real Starlette requests fed by an ASGI ``receive``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from crisiscomms.api.body import BadContentLength, BodyTooLarge, check_declared_length, read_capped
from crisiscomms.api.headers import (
    content_security_policy,
    inline_style_hashes,
    page_headers,
    security_headers,
)
from crisiscomms.api.subscriptions import form_fields, origin_of
from crisiscomms.api.throttle import KeyedLimiter, client_key, retry_after_header
from crisiscomms.api.work_queue import WorkQueue

T = TypeVar("T")


def run_fresh(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: the suite's earlier tests may leave an event
    loop running in the main thread, where ``asyncio.run`` refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def request(chunks: Iterable[bytes],
            content_length: str | None = None) -> tuple[Request, list[int]]:
    """A request whose body arrives in ``chunks``; the list counts the chunks handed over."""
    parts = list(chunks)
    given = [0]
    headers = [(b"content-length", content_length.encode())] if content_length else []

    async def receive() -> dict[str, object]:
        i = given[0]
        given[0] += 1
        if i >= len(parts):
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": parts[i], "more_body": i < len(parts) - 1}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers,
             "query_string": b""}
    return Request(scope, receive), given


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    req, given = request([b"x" * 10], content_length=str(150 * 1024 * 1024))
    with pytest.raises(BodyTooLarge) as caught:
        run_fresh(read_capped(req, 1000))
    assert given == [0] and caught.value.status == 413 and caught.value.field == "body"


def test_a_stream_is_cut_at_the_cap() -> None:
    req, given = request([b"x" * 400] * 100)  # 40 KB, chunked
    with pytest.raises(BodyTooLarge):
        run_fresh(read_capped(req, 1000))
    assert given[0] == 3  # stopped at the chunk that passed the cap


def test_a_body_within_the_limit_is_read_whole() -> None:
    req, _ = request([b"ab", b"cd", b"e"], content_length="5")
    assert run_fresh(read_capped(req, 5)) == b"abcde"


@pytest.mark.parametrize("declared", ["-1", "+5", "1e9", "12x", "²", ""])
def test_a_content_length_that_is_no_number_is_a_400(declared: str) -> None:
    req, _ = request([], content_length=declared or " ")
    with pytest.raises(BadContentLength) as caught:
        check_declared_length(req, 100)
    assert caught.value.status == 400 and caught.value.field == "content-length"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_key_has_its_own_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = KeyedLimiter(1 / 60, 2, clock=clock)  # two at once, then one a minute
    assert [limiter.retry_after("a") for _ in range(2)] == [0.0, 0.0]
    wait = limiter.retry_after("a")
    assert wait == pytest.approx(60.0)
    assert retry_after_header(wait) == {"Retry-After": "60"}
    assert limiter.retry_after("b") == 0.0  # another key is not held by "a"
    clock.now += 60
    assert limiter.retry_after("a") == 0.0 and limiter.retry_after("a") > 0


def test_the_map_of_keys_is_bounded() -> None:
    """Past ``max_keys`` the least recently used key is forgotten (it starts again with a full
    burst), the recent ones are still held."""
    limiter = KeyedLimiter(1 / 3600, 1, max_keys=3, clock=Clock())
    for key in "abcdef":
        assert limiter.retry_after(key) == 0.0
    assert limiter.retry_after("f") > 0 and limiter.retry_after("e") > 0
    assert limiter.retry_after("a") == 0.0  # forgotten
    assert retry_after_header(0.01) == {"Retry-After": "1"}


def test_the_work_queue_refuses_past_its_bound_and_survives_a_failing_job() -> None:
    gate = threading.Event()
    done: list[int] = []

    def handle(item: int) -> None:
        gate.wait(10)
        if item == 1:
            raise ValueError("boom")
        done.append(item)

    queue: WorkQueue[int] = WorkQueue(handle, workers=1, max_pending=3, name="t")
    assert [queue.submit(i) for i in range(5)] == [True, True, True, False, False]
    assert queue.pending == 3 and not queue.join(timeout_s=0.01)
    gate.set()
    assert queue.join(timeout_s=10) and sorted(done) == [0, 2]
    assert queue.submit(7) and queue.join(timeout_s=10) and 7 in done
    queue.stop()
    assert queue.submit(8) is False


def test_the_work_queue_runs_at_most_its_workers_and_starts_them_as_needed() -> None:
    gate = threading.Event()
    running: set[str] = set()
    most = [0]
    guard = threading.Lock()

    def handle(item: int) -> None:
        with guard:
            running.add(threading.current_thread().name)
            most[0] = max(most[0], len(running))
        gate.wait(10)
        with guard:
            running.discard(threading.current_thread().name)

    queue: WorkQueue[int] = WorkQueue(handle, workers=3, max_pending=100, name="w")
    assert queue.submit(0)
    assert not [t for t in threading.enumerate() if t.name.startswith("w_1")]  # one so far
    for i in range(1, 10):
        assert queue.submit(i)
    gate.set()
    assert queue.join(timeout_s=10) and queue.pending == 0
    assert most[0] <= 3
    assert len([t for t in threading.enumerate() if t.name.startswith("w_")]) == 3
    queue.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("w_")]  # all ended


def test_stopping_the_work_queue_finishes_or_drops_what_waits() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []

    def handle(item: int) -> None:
        started.set()
        gate.wait(10)
        done.append(item)

    finishing: WorkQueue[int] = WorkQueue(handle, workers=1, max_pending=10, name="f")
    assert all(finishing.submit(i) for i in range(4))
    gate.set()
    finishing.stop()  # waits: the queued ones go out first
    assert sorted(done) == [0, 1, 2, 3] and finishing.pending == 0

    gate.clear()
    started.clear()
    done.clear()
    dropping: WorkQueue[int] = WorkQueue(handle, workers=1, max_pending=10, name="d")
    assert all(dropping.submit(i) for i in range(4))
    assert started.wait(10)  # the first is running, three wait
    dropping.stop(wait=False)  # the waiting ones are dropped, the running one ends by itself
    assert dropping.submit(9) is False and dropping.pending == 1
    gate.set()
    assert dropping.join(timeout_s=10) and done == [0]


def test_security_headers_deny_by_default() -> None:
    headers = security_headers()
    csp = headers["Content-Security-Policy"]
    for part in ("default-src 'none'", "script-src 'none'", "style-src 'none'",
                 "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"):
        assert part in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in headers
    assert "Strict-Transport-Security" in security_headers(hsts=True)
    assert security_headers(frame_ancestors="'self'")["X-Frame-Options"] == "SAMEORIGIN"


def test_a_page_allows_exactly_its_own_inline_style() -> None:
    style = "body{color:red}"
    html = f"<html><head><style>{style}</style></head><body>x</body></html>"
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert inline_style_hashes(html) == [f"'sha256-{digest}'"]
    headers = page_headers(html)
    assert f"style-src 'sha256-{digest}'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert "unsafe-inline" not in content_security_policy(style_hashes=["'sha256-x'"])


@pytest.mark.parametrize(("url", "origin"), [
    ("https://Status.Example.com/", "https://status.example.com"),
    ("https://status.example.com:443/x", "https://status.example.com"),
    ("http://127.0.0.1:8040", "http://127.0.0.1:8040"),
    ("http://[::1]:8040/", "http://[::1]:8040"),
    ("not a url", ""),
])
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_the_one_click_body_is_read_urlencoded_and_multipart() -> None:
    assert form_fields("application/x-www-form-urlencoded",
                       b"List-Unsubscribe=One-Click") == {"List-Unsubscribe": ["One-Click"]}
    body = (b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            b"One-Click\r\n--b--\r\n")
    assert form_fields("multipart/form-data; boundary=b", body) == {
        "List-Unsubscribe": ["One-Click"]}


@settings(max_examples=300, deadline=None)
@given(content_type=st.sampled_from(["multipart/form-data; boundary=b", "multipart/form-data",
                                     "multipart/form-data; boundary=\"", "text/plain", ""]),
       body=st.binary(max_size=300) | st.builds(
           lambda a, b: b"--b\r\n" + a + b"\r\n\r\n" + b + b"\r\n--b--",
           st.binary(max_size=80), st.binary(max_size=80)))
def test_any_body_is_fields_or_a_value_error(content_type: str, body: bytes) -> None:
    try:
        fields = form_fields(content_type, body)
    except ValueError:
        return
    assert all(isinstance(k, str) and isinstance(v, list) for k, v in fields.items())


@pytest.mark.parametrize(("host", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("testclient", "testclient"),
    (None, "-"),
])
def test_an_ipv6_client_is_limited_by_its_64(host: str | None, key: str) -> None:
    assert client_key(host) == key
