"""Issue 14's scenarios against the subscriptions app as an attacker and a mail scanner would
try it: the real FastAPI app under uvicorn on loopback, SQLite, the SendGrid emulator (or a
provider on loopback that answers only when the test lets it)."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from crisiscomms.api.headers import inline_style_hashes
from crisiscomms.api.subscriptions import create_app
from crisiscomms.audience import subscriptions as subs
from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import make_engine
from crisiscomms.core.settings import Settings
from crisiscomms.statuspage import model
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, start_emulators
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration
SG_KEY = "SG.subscriptions-hardening-key"
LINK = r"(http://127\.0\.0\.1:\d+/v1/{}/[\w-]+)"


@pytest.fixture(scope="module")
def emus() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SG_KEY, x_token="x-hard-token") as pair:
        yield pair


@dataclass
class Served:
    base: str
    settings: Settings
    app: Any

    def settle(self) -> None:
        queue = getattr(self.app.state, "subscribe_queue", None)  # None: sent in the request
        assert queue is None or queue.join(timeout_s=60), "confirmations still queued"

    def rows(self) -> dict[str, Recipient]:
        engine = make_engine(self.settings.resolved_database_url)
        with Session(engine) as s:
            found = {r.email: r for r in s.exec(select(Recipient))}
        engine.dispose()
        return found

    def change(self, email: str, **values: Any) -> None:
        engine = make_engine(self.settings.resolved_database_url)
        with Session(engine) as s:
            row = s.exec(select(Recipient).where(Recipient.email == email)).one()
            for key, value in values.items():
                setattr(row, key, value)
            s.add(row)
            s.commit()
        engine.dispose()


Serve = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path, emus: EmulatorPair, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Start the app with these ``CRISISCOMMS_*`` settings on top of the emulators'."""
    emus.reset()
    stack: list[Any] = []

    def start(**env: str) -> Served:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        values = {**workspace_environment(tmp_path / "data", emus, SG_KEY, "x-hard-token",
                                          database_url=f"sqlite:///{tmp_path / 'subs.db'}"),
                  "CRISISCOMMS_SUBSCRIPTIONS_URL": base, "CRISISCOMMS_HTTP_TIMEOUT_S": "30",
                  **env}
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        StatusPage(settings.resolved_status_page_dir, page_name="Example Status",
                   page_url=settings.status_page_url).change(
            lambda state: model.ensure_components(state, ["API", "Dashboard"],
                                                  "2026-11-23T09:00:00.000+00:00"))
        app = create_app(settings)
        context = serve_app(app, port, name="subscriptions-hardening")
        context.__enter__()
        stack.append((context, app))
        return Served(base, settings, app)

    yield start
    for context, app in reversed(stack):
        context.__exit__(None, None, None)
        if hasattr(app.state, "subscribe_queue"):
            app.state.subscribe_queue.stop(wait=False)


def mailed_link(emus: EmulatorPair, address: str, kind: str) -> str:
    (mail,) = [m for m in emus.sendgrid.received() if m["to"] == address]
    found = re.search(LINK.format(kind), mail["text"])
    assert found is not None
    return found.group(1)


def subscribed(served: Served, emus: EmulatorPair, address: str) -> tuple[str, str]:
    """Subscribe and confirm ``address`` through the pages; its mail's two links."""
    assert httpx.post(f"{served.base}/v1/subscribe", data={"email": address},
                      timeout=5).status_code == 202
    served.settle()
    confirm, unsubscribe = (mailed_link(emus, address, "confirm"),
                            mailed_link(emus, address, "unsubscribe"))
    token = form_token(httpx.get(confirm, timeout=5).text)
    assert httpx.post(confirm, data={"form_token": token}, timeout=5).status_code == 200
    assert served.rows()[address].consent is True
    return confirm, unsubscribe


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([0-9a-f]+)"', html)
    assert found is not None, html
    return found.group(1)


# -- link scanners and cross-site posts ------------------------------------------------------


def test_opening_the_links_changes_nothing(serve: Serve, emus: EmulatorPair) -> None:
    """A mail gateway's scanner fetches every link of every email (GET, HEAD): the reader
    who never opted in stays unconfirmed, the one who did stays subscribed."""
    served = serve()
    assert httpx.post(f"{served.base}/v1/subscribe", data={"email": "new@example.org"},
                      timeout=5).status_code == 202
    served.settle()
    confirm = mailed_link(emus, "new@example.org", "confirm")
    for _ in range(3):
        page = httpx.get(confirm, timeout=5)
        assert page.status_code == 200 and "<button" in page.text and "<form" in page.text
        assert httpx.head(confirm, timeout=5).status_code in (200, 405)
    assert served.rows()["new@example.org"].consent is False

    _, unsubscribe = subscribed(served, emus, "kept@example.org")
    for _ in range(3):
        assert httpx.get(unsubscribe, timeout=5).status_code == 200
        httpx.head(unsubscribe, timeout=5)
    assert served.rows()["kept@example.org"].consent is True


def test_a_cross_site_post_unsubscribes_nobody(serve: Serve, emus: EmulatorPair) -> None:
    """Another site's form (foreign Origin), a post with any body and no form token, a wrong
    form token: 403 and still subscribed. RFC 8058's One-Click body (urlencoded or
    multipart, as mail providers post it) and our own page's button do unsubscribe."""
    served = serve()
    _, link = subscribed(served, emus, "kept@example.org")
    for headers, data in (({"Origin": "https://evil.example"}, {"x": "1"}),
                          ({"Origin": "https://evil.example"},
                           {"form_token": form_token(httpx.get(link, timeout=5).text)}),
                          ({"Origin": "null"}, {}),
                          ({}, {"anything": "at all"}),
                          ({}, {"form_token": "0" * 64}),
                          ({}, {"List-Unsubscribe": "one-click-ish"}),
                          ({"Sec-Fetch-Site": "cross-site"}, {})):
        refused = httpx.post(link, data=data, headers=headers, timeout=5)
        assert refused.status_code == 403, (headers, data, refused.text)
        assert "nothing was changed" in refused.text
        assert served.rows()["kept@example.org"].consent is True

    multipart = httpx.post(link, files={"List-Unsubscribe": (None, "One-Click")}, timeout=5)
    assert multipart.status_code == 200 and "unsubscribed" in multipart.text
    assert served.rows()["kept@example.org"].consent is False

    _, link = subscribed(served, emus, "other@example.org")
    own = httpx.post(link, data={"form_token": form_token(httpx.get(link, timeout=5).text)},
                     timeout=5)
    assert own.status_code == 200 and served.rows()["other@example.org"].consent is False


def test_a_cross_site_post_confirms_nobody(serve: Serve, emus: EmulatorPair) -> None:
    served = serve()
    assert httpx.post(f"{served.base}/v1/subscribe", data={"email": "x@example.org"},
                      timeout=5).status_code == 202
    served.settle()
    confirm = mailed_link(emus, "x@example.org", "confirm")
    token = form_token(httpx.get(confirm, timeout=5).text)
    for headers, data in (({"Origin": "https://evil.example"}, {"form_token": token}),
                          ({}, {}), ({}, {"form_token": token[::-1]}),
                          ({}, {"List-Unsubscribe": "One-Click"})):
        assert httpx.post(confirm, data=data, headers=headers, timeout=5).status_code == 403
    assert served.rows()["x@example.org"].consent is False
    same = httpx.post(confirm, headers={"Origin": served.base}, timeout=5)  # our page, no token
    assert same.status_code == 200 and served.rows()["x@example.org"].consent is True


def test_another_site_cannot_post_the_subscribe_form(serve: Serve, emus: EmulatorPair) -> None:
    """The status page's own form (its origin) and API clients (no Origin) subscribe; a form
    on another site (a visitor's browser used to mail-bomb someone) gets 403, sends nothing."""
    served = serve()
    page_origin = served.settings.status_page_url.rstrip("/")
    for origin in ("https://evil.example", "null"):
        refused = httpx.post(f"{served.base}/v1/subscribe", data={"email": "v@example.org"},
                             headers={"Origin": origin}, timeout=5)
        assert refused.status_code == 403 and "another website" in refused.text
    served.settle()
    assert served.rows() == {} and emus.sendgrid.received() == []
    assert httpx.post(f"{served.base}/v1/subscribe", data={"email": "v@example.org"},
                      headers={"Origin": page_origin}, timeout=5).status_code == 202
    assert httpx.post(f"{served.base}/v1/subscribe", json={"email": "w@example.org"},
                      timeout=5).status_code == 202
    served.settle()
    assert set(served.rows()) == {"v@example.org", "w@example.org"}


# -- tokens --------------------------------------------------------------------------------------


def test_confirm_tokens_are_hashed_rotated_single_use_and_expire(serve: Serve,
                                                                 emus: EmulatorPair) -> None:
    served = serve(CRISISCOMMS_SUBSCRIBE_MAILBOX_BURST="5")
    address = "rotate@example.org"
    assert httpx.post(f"{served.base}/v1/subscribe", data={"email": address},
                      timeout=5).status_code == 202
    served.settle()
    first = mailed_link(emus, address, "confirm")
    raw = first.rsplit("/", 1)[1]
    stored = served.rows()[address].confirm_token
    assert stored == hashlib.sha256(raw.encode()).hexdigest() and raw not in str(stored)

    # a resend (after the hour between resends) rotates: the first link dies
    served.change(address, confirm_sent_at=utcnow() - timedelta(hours=2))
    emus.reset()
    assert httpx.post(f"{served.base}/v1/subscribe", data={"email": address},
                      timeout=5).status_code == 202
    served.settle()
    second = mailed_link(emus, address, "confirm")
    assert second != first
    assert httpx.get(first, timeout=5).status_code == 404
    assert httpx.post(first, headers={"Origin": served.base}, timeout=5).status_code == 404

    # 48 h after it was sent, the link has expired: 410 and nothing changes
    served.change(address, confirm_sent_at=utcnow() - timedelta(hours=48, minutes=1))
    assert httpx.get(second, timeout=5).status_code == 410
    expired = httpx.post(second, headers={"Origin": served.base}, timeout=5)
    assert expired.status_code == 410 and "expired" in expired.text
    assert served.rows()[address].consent is False

    served.change(address, confirm_sent_at=utcnow() - timedelta(hours=47))
    assert httpx.post(second, headers={"Origin": served.base}, timeout=5).status_code == 200
    assert httpx.post(second, headers={"Origin": served.base}, timeout=5).status_code == 404


# -- a slow provider -------------------------------------------------------------------------------


class GatedProvider:
    """A SendGrid Mail Send endpoint on loopback that holds every request until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                gate.arrived.release()
                gate.release.wait(60)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[GatedProvider]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()


def test_a_provider_that_does_not_answer_holds_no_request(serve: Serve) -> None:
    """While the provider holds every confirmation email, subscribe requests and an unrelated
    request are answered all the same (before, the first subscribe waited for the provider
    and the others queued behind it on the event loop)."""
    with GatedProvider().running() as provider:
        served = serve(CRISISCOMMS_SENDGRID_BASE_URL=provider.url,
                       CRISISCOMMS_SUBSCRIBE_SENDERS="2")
        with httpx.Client(base_url=served.base, timeout=10) as client:
            answers = [client.post("/v1/subscribe", data={"email": f"r{i}@example.org"})
                       for i in range(3)]
            assert [a.status_code for a in answers] == [202, 202, 202]
            assert provider.arrived.acquire(timeout=30)  # a worker is inside the provider
            assert client.get("/v1/unsubscribe/unknown-token").status_code == 404
            assert client.get("/openapi.json").status_code == 200
            assert not provider.release.is_set()
        provider.release.set()
        served.settle()


def test_the_answer_does_not_depend_on_the_address_state(serve: Serve,
                                                         emus: EmulatorPair) -> None:
    """The answer is sent before the database is read: with the only sender held by the
    provider, a new address is answered while its row does not exist yet, with the same
    bytes as a subscribed address gets."""
    served0 = serve()
    subscribed(served0, emus, "known@example.org")
    with GatedProvider().running() as provider:
        served = serve(CRISISCOMMS_SENDGRID_BASE_URL=provider.url,
                       CRISISCOMMS_SUBSCRIBE_SENDERS="1")
        with httpx.Client(base_url=served.base, timeout=10) as client:
            assert client.post("/v1/subscribe", json={"email": "first@example.org"}
                               ).status_code == 202
            assert provider.arrived.acquire(timeout=30)  # the one sender is now held
            new = client.post("/v1/subscribe", json={"email": "fresh@example.org"})
            known = client.post("/v1/subscribe", json={"email": "known@example.org"})
            assert "fresh@example.org" not in served.rows()  # answered before any database work
            assert (new.status_code, new.content) == (known.status_code, known.content)
            same = {k: v for k, v in new.headers.items() if k != "date"}
            assert same == {k: v for k, v in known.headers.items() if k != "date"}
        provider.release.set()
        served.settle()
        assert served.rows()["fresh@example.org"].consent is False


def test_a_held_email_holds_no_other_request_from_being_recorded(serve: Serve) -> None:
    """Recording and rendering take turns (one worker at a time), the provider's wait does
    not: with the first email held by the provider, the second request is still recorded and
    its email reaches the provider too."""
    with GatedProvider().running() as provider:
        served = serve(CRISISCOMMS_SENDGRID_BASE_URL=provider.url,
                       CRISISCOMMS_SUBSCRIBE_SENDERS="2")
        with httpx.Client(base_url=served.base, timeout=10) as client:
            assert client.post("/v1/subscribe", data={"email": "one@example.org"}
                               ).status_code == 202
            assert provider.arrived.acquire(timeout=30)  # the first email is held
            assert client.post("/v1/subscribe", data={"email": "two@example.org"}
                               ).status_code == 202
            assert provider.arrived.acquire(timeout=30)  # so is the second, both in flight
            assert not provider.release.is_set()
            assert {"one@example.org", "two@example.org"} <= set(served.rows())
        provider.release.set()
        served.settle()
        assert all(row.confirm_sent_at is not None for row in served.rows().values())


def test_a_component_added_to_the_page_is_accepted_at_once(serve: Serve,
                                                           emus: EmulatorPair) -> None:
    """Known components are looked up without touching the disk for a second; a name not
    known yet looks again, so a component the page just gained is no 400."""
    served = serve()
    with httpx.Client(base_url=served.base, timeout=10) as client:
        assert client.post("/v1/subscribe", json={"email": "a@example.org",
                                                  "components": ["API"]}).status_code == 202
        StatusPage(served.settings.resolved_status_page_dir, page_name="Example Status",
                   page_url=served.settings.status_page_url).change(
            lambda state: model.ensure_components(state, ["Billing"],
                                                  "2026-11-23T10:00:00.000+00:00"))
        assert client.post("/v1/subscribe", json={"email": "b@example.org",
                                                  "components": ["Billing"]}).status_code == 202
        unknown = client.post("/v1/subscribe", json={"email": "c@example.org",
                                                     "components": ["Nope"]})
        assert unknown.status_code == 400 and unknown.json()["values"] == ["Nope"]
    served.settle()
    assert served.rows()["b@example.org"].components == "Billing"


# -- rate limits -----------------------------------------------------------------------------------


def test_one_client_cannot_send_forty_emails(serve: Serve, emus: EmulatorPair) -> None:
    served = serve(CRISISCOMMS_SUBSCRIBE_CLIENT_BURST="5",
                   CRISISCOMMS_SUBSCRIBE_CLIENT_PER_MINUTE="0.001")
    with httpx.Client(base_url=served.base, timeout=10) as client:
        answers = [client.post("/v1/subscribe", data={"email": f"bot{i}@example.org"})
                   for i in range(40)]
    assert [a.status_code for a in answers].count(202) == 5
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 35
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert "Too many requests" in refused[0].text
    served.settle()
    assert len(emus.sendgrid.received()) == 5


def test_plus_tags_and_case_reach_one_mailbox(serve: Serve, emus: EmulatorPair) -> None:
    """``name+1@`` ... ``+5@`` and ``NAME@`` are one mailbox: two emails at most (the
    mailbox's burst), the rest 429 with ``Retry-After``, JSON naming nothing secret."""
    served = serve()
    addresses = [f"name+{i}@example.org" for i in range(1, 6)] + ["NAME@Example.org"]
    answers = [httpx.post(f"{served.base}/v1/subscribe", json={"email": a}, timeout=5)
               for a in addresses]
    assert [a.status_code for a in answers] == [202, 202, 429, 429, 429, 429]
    assert int(answers[2].headers["retry-after"]) > 60  # two an hour
    assert answers[2].json()["message"].startswith("Too many requests")
    served.settle()
    assert sorted(m["to"] for m in emus.sendgrid.received()) == ["name+1@example.org",
                                                                 "name+2@example.org"]
    other = httpx.post(f"{served.base}/v1/subscribe", json={"email": "someone@example.org"},
                       timeout=5)
    assert other.status_code == 202


# -- big bodies ---------------------------------------------------------------------------------


def raw_request(base: str, head: str, body_parts: list[bytes]) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in body_parts:
            sock.sendall(part)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_a_huge_body_is_refused_unread(serve: Serve) -> None:
    """A declared 150 MB body: 413 from the headers alone (the test never sends the body, so
    an app that waited for it would hang). A chunked body with no length: cut at the cap."""
    served = serve()
    declared = raw_request(served.base, "POST /v1/subscribe HTTP/1.1\r\nHost: x\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n"
                           f"Content-Length: {150 * 1024 * 1024}\r\n\r\n", [])
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    chunk = b"email=" + b"a" * 8000
    chunked = raw_request(
        served.base, "POST /v1/subscribe HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
        [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 4)  # 32 KB, then no end chunk
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    for path in ("/v1/unsubscribe/abc", "/v1/confirm/abc"):
        big = httpx.post(served.base + path, content=b"x" * 5000, timeout=5,
                         headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413


# -- headers ---------------------------------------------------------------------------------------


def test_every_page_carries_the_security_headers(serve: Serve, emus: EmulatorPair) -> None:
    served = serve()
    confirm, unsubscribe = subscribed(served, emus, "h@example.org")
    answers = [httpx.get(unsubscribe, timeout=5), httpx.get(confirm, timeout=5),
               httpx.get(f"{served.base}/v1/unsubscribe/nope", timeout=5),
               httpx.post(f"{served.base}/v1/subscribe", data={"email": "y@example.org"},
                          timeout=5),
               httpx.post(f"{served.base}/v1/subscribe", json={"email": "bad"}, timeout=5),
               httpx.get(f"{served.base}/no/such/page", timeout=5)]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, answer.url
        assert "unsafe-inline" not in csp and "script-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
        if answer.headers["content-type"].startswith("text/html"):
            assert answer.headers["cache-control"] == "no-store"
            for style in inline_style_hashes(answer.text):  # the page's own style may apply
                assert style in csp
            assert inline_style_hashes(answer.text)


# -- the loop under a crowd ------------------------------------------------------------------------


def test_the_link_pages_cost_the_loop_one_turn_on_sqlite_and_read_in_a_thread_on_postgresql(
        db_url: str, tmp_path: Path, emus: EmulatorPair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a crowd every turn of the event loop waits for the crowd's requests: the
    confirm and unsubscribe pages, opened from emails meanwhile, read their row on the loop
    on SQLite (one turn, not four through a worker thread), and on PostgreSQL, across a
    network, in a thread (the loop keeps turning while it waits)."""
    for key, value in workspace_environment(tmp_path / "data", emus, SG_KEY, "x-hard-token",
                                            database_url=db_url).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    app = create_app(settings)
    engine = make_engine(db_url)
    with Session(engine) as s:
        reader = Recipient(email="reader@example.org", consent=True)
        pending = Recipient(email="pending@example.org", consent=False,
                            confirm_token=subs.hash_token("pending-token"),
                            confirm_sent_at=utcnow())
        s.add_all([reader, pending])
        s.commit()
        unsubscribe_path = f"/v1/unsubscribe/{reader.unsubscribe_token}"
    engine.dispose()

    async def turns_to_answer(path: str) -> tuple[int, int, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "headers": [(b"host", b"127.0.0.1")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        task = asyncio.ensure_future(app(scope, receive, send))
        turns = 0
        while not task.done():
            await asyncio.sleep(0)
            turns += 1
        task.result()
        return turns, sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    def answered(path: str) -> tuple[int, int, bytes]:
        """In a loop of its own, on a thread of its own (another test's loop may be running
        on this one)."""
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, turns_to_answer(path)).result()

    try:
        for path in (unsubscribe_path, "/v1/confirm/pending-token"):
            turns, status, body = answered(path)
            assert status == 200 and b"<button" in body, (path, status)
            if db_url.startswith("sqlite"):
                assert turns == 1, (path, turns)
            else:
                assert turns > 1, (path, turns)
        turns, status, _ = answered("/v1/unsubscribe/no-such-token")
        assert status == 404
    finally:
        app.state.subscribe_queue.stop(wait=False)


def test_the_pages_answer_while_every_database_connection_waits_for_a_writer(
        serve: Serve, emus: EmulatorPair) -> None:
    """A crowd of unsubscribe clicks while something holds SQLite's write lock: each click's
    thread holds a pooled connection while it waits for the lock, more clicks than the pool
    has connections. The pages' reads, done on the event loop, must not wait for a pooled
    connection (the loop would stop for every request): they still answer meanwhile."""
    served = serve()
    _, unsubscribe = subscribed(served, emus, "crowd@example.org")
    token = form_token(httpx.get(unsubscribe, timeout=5).text)
    writer = sqlite3.connect(served.settings.resolved_database_url.removeprefix("sqlite:///"),
                             isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the write lock, held
    clicks: list[threading.Thread] = []
    try:
        for _ in range(24):  # more than the pool's 15 connections
            click = threading.Thread(target=lambda: httpx.post(
                unsubscribe, data={"form_token": token}, timeout=60), daemon=True)
            click.start()
            clicks.append(click)
        time.sleep(1)  # the clicks are waiting: for the lock, or for a connection
        page = httpx.get(unsubscribe, timeout=10)  # the loop still turns
        assert page.status_code == 200 and "<button" in page.text
        assert httpx.get(f"{served.base}/v1/unsubscribe/no-such-token",
                         timeout=10).status_code == 404
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    for click in clicks:
        click.join(timeout=60)
    assert served.rows()["crowd@example.org"].consent is False
