"""The SendGrid and X emulators, over real HTTP on loopback (and through the real SDKs)."""

from __future__ import annotations

import copy
import html
import http.client
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from crisiscomms.testing.emulators import (
    EmulatorPair,
    Faults,
    SendGridEmulator,
    XEmulator,
    start_emulators,
)

pytestmark = pytest.mark.integration

SG_KEY = "SG.test-key"
X_TOKEN = "x-test-token"
X_CONSUMER = "consumer-key-1"


# --------------------------------------------------------------------------------------------
# HTTP helpers (plain http.client: no third-party client between the test and the server)


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def first_field(self) -> str | None:
        return self.json()["errors"][0]["field"]


def call(
    base_url: str,
    method: str,
    path: str,
    body: object = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 5.0,
) -> Answer:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def sg_auth(key: str = SG_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def x_auth(token: str = X_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mail_send(emu: SendGridEmulator, body: object, key: str = SG_KEY) -> Answer:
    return call(emu.url, "POST", "/v3/mail/send", body, headers=sg_auth(key))


def tweet(emu: XEmulator, text: str, **extra: Any) -> Answer:
    return call(emu.url, "POST", "/2/tweets", {"text": text, **extra}, headers=x_auth())


def mail_body(*emails: str, key: str | None = "k-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": e}]} for e in (emails or ("ann@example.com",))],
        "from": {"email": "status@example.com", "name": "Status"},
        "subject": "Service disruption",
        "content": [
            {"type": "text/plain", "value": "We are investigating."},
            {"type": "text/html", "value": "<p>We are investigating.</p>"},
        ],
    }
    if key is not None:
        body["custom_args"] = {"crisiscomms_key": key}
    body.update(overrides)
    return body


# --------------------------------------------------------------------------------------------
# Fixtures: one server of each kind per module, reset before every test


@pytest.fixture(scope="module")
def pair() -> Iterator[EmulatorPair]:
    with start_emulators(
        sendgrid_key=SG_KEY, x_token=X_TOKEN, x_consumer_key=X_CONSUMER
    ) as emulators:
        yield emulators


@pytest.fixture
def sg(pair: EmulatorPair) -> SendGridEmulator:
    pair.sendgrid.reset()
    return pair.sendgrid


@pytest.fixture
def x(pair: EmulatorPair) -> XEmulator:
    pair.x.reset()
    return pair.x


# --------------------------------------------------------------------------------------------
# SendGrid: success and records


def test_accepted_202_with_message_id_and_empty_body(sg: SendGridEmulator) -> None:
    answer = mail_send(sg, mail_body("ann@example.com", "bob@example.com"))
    assert answer.status == 202
    assert answer.body == b""
    assert answer.headers["Content-Length"] == "0"
    assert len(answer.headers["X-Message-Id"]) >= 16
    stats = sg.stats()
    assert stats["accepted_messages"] == 1
    assert stats["recipients"] == 2
    assert stats["distinct_keys"] == 1
    assert stats["duplicates"] == 0
    assert sg.accepted("k-1")


def test_records_apply_substitutions_once_with_overrides(sg: SendGridEmulator) -> None:
    body = mail_body(key="batch-key")
    body["subject"] = "Update for -name-"
    body["content"] = [
        {"type": "text/plain", "value": "Hello -name-, -city- is affected."},
        {"type": "text/html", "value": "<p>Hello -name-</p>"},
    ]
    body["personalizations"] = [
        {
            "to": [{"email": "ann@example.com"}],
            # the value holds another key: it must not be substituted again
            "substitutions": {"-name-": "Ann -city-", "-city-": "Paris"},
            "custom_args": {"crisiscomms_key": "own-key", "crisiscomms_batch": "b-7"},
        },
        {
            "to": [{"email": "bob@example.com"}, {"email": "cy@example.com"}],
            "subject": "Personal subject -name-",
            "substitutions": {"-name-": "Bob", "-city-": "Lyon"},
        },
    ]
    assert mail_send(sg, body).status == 202

    ann = sg.received("own-key")
    assert len(ann) == 1
    assert ann[0]["to"] == "ann@example.com"
    assert ann[0]["subject"] == "Update for Ann -city-"
    assert ann[0]["text"] == "Hello Ann -city-, Paris is affected."
    assert ann[0]["html"] == "<p>Hello Ann -city-</p>"
    assert ann[0]["batch"] == "b-7"
    assert ann[0]["channel"] == "email"

    others = sg.received("batch-key")  # message-level key is the fallback
    assert [r["to"] for r in others] == ["bob@example.com", "cy@example.com"]
    assert all(r["subject"] == "Personal subject Bob" for r in others)
    assert all(r["text"] == "Hello Bob, Lyon is affected." for r in others)
    assert sg.stats()["distinct_keys"] == 2
    assert len(sg.received()) == 3


def test_no_key_records_none(sg: SendGridEmulator) -> None:
    assert mail_send(sg, mail_body(key=None)).status == 202
    (record,) = sg.received()
    assert record["key"] is None
    assert sg.stats()["distinct_keys"] == 0


def test_subject_only_in_every_personalization_is_accepted(sg: SendGridEmulator) -> None:
    body = mail_body("ann@example.com", "bob@example.com")
    del body["subject"]
    for p in body["personalizations"]:
        p["subject"] = "Per-recipient subject"
    assert mail_send(sg, body).status == 202
    assert {r["subject"] for r in sg.received()} == {"Per-recipient subject"}


def test_thousand_personalizations_accepted(sg: SendGridEmulator) -> None:
    emails = [f"user{i}@example.com" for i in range(1000)]
    answer = mail_send(sg, mail_body(*emails, key="big"))
    assert answer.status == 202
    assert sg.stats()["recipients"] == 1000
    assert sg.received("big", limit=3)[2]["to"] == "user2@example.com"


def test_same_key_and_recipient_twice_counts_a_duplicate(sg: SendGridEmulator) -> None:
    assert mail_send(sg, mail_body("ann@example.com", "bob@example.com", key="k")).status == 202
    assert mail_send(sg, mail_body("Ann@Example.com", key="k")).status == 202
    assert mail_send(sg, mail_body("ann@example.com", key="other")).status == 202
    stats = sg.stats()
    assert stats["duplicates"] == 1
    assert stats["accepted_messages"] == 3
    assert sg.key_status("k") == {"key": "k", "accepted": True, "count": 3}


def test_sandbox_mode_validates_answers_200_and_records_nothing(sg: SendGridEmulator) -> None:
    sandbox = {"sandbox_mode": {"enable": True}}
    answer = mail_send(sg, mail_body(mail_settings=sandbox))
    assert answer.status == 200
    assert answer.body == b""
    assert sg.stats()["accepted_messages"] == 0
    assert sg.received() == []
    bad = mail_body(mail_settings=sandbox)
    del bad["from"]
    assert mail_send(sg, bad).status == 400


# --------------------------------------------------------------------------------------------
# SendGrid: refusals (table-driven)


def _without(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return mutate


def _setting(value: Any, *path: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


BAD_BODIES = [
    pytest.param(_without("personalizations"), "personalizations", id="no-personalizations"),
    pytest.param(_setting([], "personalizations"), "personalizations", id="empty-personalizations"),
    pytest.param(
        _setting(
            [{"to": [{"email": f"u{i}@example.com"}]} for i in range(1001)], "personalizations"
        ),
        "personalizations",
        id="1001-personalizations",
    ),
    pytest.param(_without("from"), "from", id="no-from"),
    pytest.param(_setting("not-an-address", "from", "email"), "from.email", id="bad-from"),
    pytest.param(_without("subject"), "subject", id="no-subject"),
    pytest.param(_without("content"), "content", id="no-content"),
    pytest.param(_setting("", "content", 0, "value"), "content.0.value", id="empty-content"),
    pytest.param(_without("personalizations", 0, "to"), "personalizations.0.to", id="no-to"),
    pytest.param(_setting([], "personalizations", 0, "to"), "personalizations.0.to", id="empty-to"),
    pytest.param(
        _setting("ann at example.com", "personalizations", 0, "to", 0, "email"),
        "personalizations.0.to.0.email",
        id="bad-to",
    ),
    pytest.param(
        _setting("nobody@localhost", "personalizations", 1, "to", 0, "email"),
        "personalizations.1.to.0.email",
        id="bad-to-second-personalization",
    ),
    pytest.param(
        _setting({"-x-": "y" * 10_001}, "personalizations", 0, "substitutions"),
        "personalizations.0.substitutions",
        id="substitutions-over-10000-bytes",
    ),
    pytest.param(
        _setting([{"email": "ANN@example.com"}], "personalizations", 0, "cc"),
        "personalizations.0.cc.0.email",
        id="duplicate-to-cc",
    ),
    pytest.param(
        _setting(
            [{"email": "x@example.com"}, {"email": "x@example.com"}], "personalizations", 0, "bcc"
        ),
        "personalizations.0.bcc.1.email",
        id="duplicate-within-bcc",
    ),
    pytest.param(
        _setting(
            [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}],
            "content",
        ),
        "content",
        id="html-before-text",
    ),
    pytest.param(
        _setting({"crisiscomms_key": 7}, "custom_args"), "custom_args", id="non-string-custom-arg"
    ),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_BODIES)
def test_bad_body_is_refused_naming_the_field(
    sg: SendGridEmulator, mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    body = mail_body("ann@example.com", "bob@example.com")
    mutate(body)
    before = sg.stats()["accepted_messages"]
    answer = mail_send(sg, body)
    assert answer.status == 400
    errors = answer.json()["errors"]
    assert field in [e["field"] for e in errors], errors
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    assert sg.stats()["accepted_messages"] == before
    assert sg.stats()["rejected"]["400"] == 1
    assert sg.received() == []


def test_more_than_1000_personalizations_message(sg: SendGridEmulator) -> None:
    body = mail_body(*[f"u{i}@example.com" for i in range(1001)])
    answer = mail_send(sg, body)
    assert answer.status == 400
    assert answer.json()["errors"][0] == {
        "message": "The personalizations field must have at most 1000 items",
        "field": "personalizations",
        "help": answer.json()["errors"][0]["help"],
    }


@pytest.mark.parametrize(
    "raw",
    [pytest.param(b"{not json", id="invalid-json"), pytest.param(b"[1, 2]", id="json-array")],
)
def test_unparsable_body_is_400_with_null_field(sg: SendGridEmulator, raw: bytes) -> None:
    answer = call(sg.url, "POST", "/v3/mail/send", raw=raw, headers=sg_auth())
    assert answer.status == 400
    assert answer.first_field is None
    assert sg.stats()["accepted_messages"] == 0


def test_body_over_20mb_is_413(sg: SendGridEmulator) -> None:
    raw = b'{"x": "' + b"a" * (20 * 1024 * 1024 + 10) + b'"}'
    answer = call(sg.url, "POST", "/v3/mail/send", raw=raw, headers=sg_auth(), timeout=30)
    assert answer.status == 413
    assert answer.first_field is None
    assert sg.stats()["accepted_messages"] == 0


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param(
            sg_auth("SG.wrong"),
            "The provided authorization grant is invalid, expired, or revoked",
            id="wrong-key",
        ),
        pytest.param(
            {"Authorization": "Basic abc"},
            "The provided authorization grant is invalid, expired, or revoked",
            id="not-bearer",
        ),
        pytest.param({}, "authorization required", id="missing"),
    ],
)
def test_unauthorised_is_401(sg: SendGridEmulator, headers: dict[str, str], message: str) -> None:
    answer = call(sg.url, "POST", "/v3/mail/send", mail_body(), headers=headers)
    assert answer.status == 401
    assert answer.json() == {"errors": [{"message": message, "field": None, "help": None}]}
    assert sg.stats()["accepted_messages"] == 0
    assert sg.stats()["rejected"] == {"401": 1}


def test_unknown_path_is_404(sg: SendGridEmulator) -> None:
    assert call(sg.url, "POST", "/v3/mail/batch", {}, headers=sg_auth()).status == 404


# --------------------------------------------------------------------------------------------
# SendGrid: rate limit and faults


def test_rate_limit_answers_429_with_headers(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(rate_limit=2, rate_window_s=60))
    assert mail_send(sg, mail_body(key="a")).status == 202
    assert mail_send(sg, mail_body(key="b")).status == 202
    answer = mail_send(sg, mail_body(key="c"))
    assert answer.status == 429
    assert answer.json() == {"errors": [{"field": None, "message": "too many requests"}]}
    assert answer.headers["X-RateLimit-Limit"] == "2"
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    reset = int(answer.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert not sg.accepted("c")
    assert sg.stats()["rejected"] == {"429": 1}


def test_error_rate_is_reproducible_with_a_seed(sg: SendGridEmulator) -> None:
    def run() -> list[int]:
        sg.reset()
        sg.set_faults(Faults(error_rate=0.5, error_statuses=(500, 503), seed=42))
        return [mail_send(sg, mail_body(key=f"k{i}")).status for i in range(30)]

    first = run()
    assert first == run()
    assert set(first) == {202, 500, 503}
    accepted = first.count(202)
    assert sg.stats()["accepted_messages"] == accepted
    assert sg.stats()["rejected"] == {
        "500": first.count(500),
        "503": first.count(503),
    }
    for i, status in enumerate(first):
        assert sg.accepted(f"k{i}") is (status == 202)


def test_injected_429_carries_rate_limit_headers(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(error_rate=1.0, error_statuses=(429,), seed=1))
    answer = mail_send(sg, mail_body())
    assert answer.status == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert "X-RateLimit-Reset" in answer.headers


def test_lost_response_records_then_closes(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(lost_response_rate=1.0))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        mail_send(sg, mail_body(key="lost-1"))
    assert sg.accepted("lost-1")
    assert sg.stats()["accepted_messages"] == 1
    assert sg.stats()["dropped"] == {"lost_response": 1}
    status = call(sg.url, "GET", "/_emulator/keys/lost-1").json()
    assert status == {"key": "lost-1", "accepted": True, "count": 1}


def test_reset_fault_records_nothing(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(reset_rate=1.0))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        mail_send(sg, mail_body(key="reset-1"))
    assert not sg.accepted("reset-1")
    assert sg.stats()["accepted_messages"] == 0


def test_timeout_fault_hangs_then_closes(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(timeout_rate=1.0, hang_s=0.3))
    started = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        mail_send(sg, mail_body(key="slow-1"))
    assert time.monotonic() - started >= 0.25
    assert not sg.accepted("slow-1")


def test_client_timeout_during_hang(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(timeout_rate=1.0, hang_s=2))
    with pytest.raises(TimeoutError):
        call(sg.url, "POST", "/v3/mail/send", mail_body(), headers=sg_auth(), timeout=0.2)


def test_latency_is_added(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(latency_ms=150))
    started = time.monotonic()
    assert mail_send(sg, mail_body()).status == 202
    assert time.monotonic() - started >= 0.14


# --------------------------------------------------------------------------------------------
# Control endpoints and export


def test_control_endpoints_over_http(sg: SendGridEmulator) -> None:
    body = mail_body("ann@example.com", "bob@example.com", key="key/with space")
    body["personalizations"][0]["substitutions"] = {"-x-": "1"}
    assert mail_send(sg, body).status == 202
    assert mail_send(sg, mail_body(key="other")).status == 202

    key = quote("key/with space", safe="")
    records = call(sg.url, "GET", f"/_emulator/received?key={key}&limit=1").json()
    assert [r["to"] for r in records] == ["ann@example.com"]
    assert len(call(sg.url, "GET", "/_emulator/received").json()) == 3

    stats = call(sg.url, "GET", "/_emulator/stats").json()
    assert stats["requests"] == 2
    assert stats["accepted_messages"] == 2
    assert stats["recipients"] == 3
    assert stats["duplicates"] == 0
    assert stats["distinct_keys"] == 2
    assert stats["rejected"] == {}

    assert call(sg.url, "GET", f"/_emulator/keys/{key}").json() == {
        "key": "key/with space",
        "accepted": True,
        "count": 2,
    }
    assert call(sg.url, "GET", "/_emulator/keys/nope").json() == {
        "key": "nope",
        "accepted": False,
        "count": 0,
    }

    answer = call(sg.url, "POST", "/_emulator/faults", {"error_rate": 1.0, "error_statuses": [503]})
    assert answer.status == 200
    assert sg.faults == Faults(error_rate=1.0, error_statuses=(503,))
    assert mail_send(sg, mail_body()).status == 503
    assert call(sg.url, "POST", "/_emulator/faults", {"nonsense": 1}).status == 400
    assert call(sg.url, "POST", "/_emulator/faults", {"error_rate": 2}).status == 400

    assert call(sg.url, "POST", "/_emulator/reset").status == 200
    assert sg.faults == Faults()
    assert sg.stats()["accepted_messages"] == 0
    assert mail_send(sg, mail_body()).status == 202


def test_export_jsonl_email(sg: SendGridEmulator, tmp_path: Path) -> None:
    body = mail_body("ann@example.com", "bob@example.com", key="exp")
    body["content"] = [{"type": "text/plain", "value": "Hi -n-"}]
    body["personalizations"][0]["substitutions"] = {"-n-": "Ann"}
    body["personalizations"][1]["substitutions"] = {"-n-": "Bob"}
    assert mail_send(sg, body).status == 202
    path = tmp_path / "email.jsonl"
    assert sg.export_jsonl(path) == 2
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [
        (r["channel"], r["key"], r["to"], r["subject"], r["text"], r["html"]) for r in lines
    ] == [
        ("email", "exp", "ann@example.com", "Service disruption", "Hi Ann", None),
        ("email", "exp", "bob@example.com", "Service disruption", "Hi Bob", None),
    ]
    assert all(r["received_at"].endswith("Z") for r in lines)


def test_keep_alive_and_stop_cuts_connections() -> None:
    emu = SendGridEmulator(SG_KEY).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
        for _ in range(2):
            conn.request("POST", "/v3/mail/send", json.dumps(mail_body()), sg_auth())
            response = conn.getresponse()
            response.read()
            assert response.status == 202
            assert not response.will_close
        sock = conn.sock
        conn.request("GET", "/_emulator/stats")
        stats_response = conn.getresponse()
        assert json.loads(stats_response.read())["accepted_messages"] == 2
        assert conn.sock is sock  # one connection for all three requests
        emu.stop()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, OSError)):
            conn.request("GET", "/_emulator/stats")
            conn.getresponse()
        conn.close()
        with pytest.raises(ConnectionRefusedError):
            call(emu.url, "GET", "/_emulator/stats")
        # Restart on the same port: records survive, like a provider outliving our crash.
        emu.start()
        assert call(emu.url, "GET", "/_emulator/stats").json()["accepted_messages"] == 2
    finally:
        emu.stop()


def test_sendgrid_sdk_against_emulator(sg: SendGridEmulator) -> None:
    sendgrid = pytest.importorskip("sendgrid")
    from python_http_client import exceptions
    from sendgrid.helpers.mail import Mail

    client = sendgrid.SendGridAPIClient(SG_KEY, host=sg.url)
    response = client.client.mail.send.post(request_body=mail_body(key="sdk-1"))
    assert response.status_code == 202
    assert response.headers["X-Message-Id"]

    message = Mail(
        from_email="status@example.com",
        to_emails="reader@example.com",
        subject="SDK subject",
        plain_text_content="Plain",
        html_content="<p>Html</p>",
    )
    assert client.send(message).status_code == 202
    assert sg.received()[-1]["to"] == "reader@example.com"

    with pytest.raises(exceptions.BadRequestsError) as bad:
        client.client.mail.send.post(request_body=mail_body(subject=""))
    assert json.loads(bad.value.body)["errors"][0]["field"] == "subject"

    wrong = sendgrid.SendGridAPIClient("SG.wrong", host=sg.url)
    with pytest.raises(exceptions.UnauthorizedError):
        wrong.client.mail.send.post(request_body=mail_body())
    assert sg.stats()["accepted_messages"] == 2


# --------------------------------------------------------------------------------------------
# X


def test_x_create_201_then_duplicate_403(x: XEmulator) -> None:
    answer = tweet(x, "Outage: we are investigating.")
    assert answer.status == 201
    data = answer.json()["data"]
    assert len(data["id"]) == 19 and data["id"].isdigit()
    assert data["text"] == "Outage: we are investigating."
    assert data["edit_history_tweet_ids"] == [data["id"]]

    again = tweet(x, "Outage: we are investigating.")
    assert again.status == 403
    assert again.json() == {
        "detail": "You are not allowed to create a Tweet with duplicate content.",
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
    }
    stats = x.stats()
    assert stats["accepted_messages"] == 1
    assert stats["duplicates"] == 1
    assert stats["rejected"] == {"403": 1}
    assert x.accepted(data["id"]) and x.accepted("Outage: we are investigating.")


def test_x_reply_is_recorded(x: XEmulator) -> None:
    first = tweet(x, "Update 1").json()["data"]["id"]
    reply = tweet(x, "Update 2", reply={"in_reply_to_tweet_id": first})
    assert reply.status == 201
    assert x.received()[-1]["reply_to"] == first
    bad = tweet(x, "Update 3", reply={"in_reply_to_tweet_id": "abc"})
    assert bad.status == 400


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(x_auth("wrong"), id="wrong-bearer"),
        pytest.param({}, id="missing"),
        pytest.param(
            {"Authorization": 'OAuth oauth_consumer_key="other", oauth_signature="s"'},
            id="wrong-consumer-key",
        ),
    ],
)
def test_x_unauthorised_401(x: XEmulator, headers: dict[str, str]) -> None:
    answer = call(x.url, "POST", "/2/tweets", {"text": "hello"}, headers=headers)
    assert answer.status == 401
    assert answer.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }
    assert x.stats()["accepted_messages"] == 0


def test_x_oauth1_consumer_key_accepted(x: XEmulator) -> None:
    header = (
        f'OAuth oauth_consumer_key="{X_CONSUMER}", oauth_nonce="n", '
        'oauth_signature="whatever", oauth_signature_method="HMAC-SHA1"'
    )
    answer = call(x.url, "POST", "/2/tweets", {"text": "signed"}, headers={"Authorization": header})
    assert answer.status == 201


@pytest.mark.parametrize(
    ("text", "status"),
    [
        pytest.param("a" * 280, 201, id="280"),
        pytest.param("a" * 281, 400, id="281"),
        pytest.param("語" * 141, 400, id="cjk-282"),
        pytest.param("a" * 250 + " https://status.example.com/" + "x" * 100, 201, id="url-23"),
        pytest.param("", 400, id="empty"),
    ],
)
def test_x_weighted_length_limit(x: XEmulator, text: str, status: int) -> None:
    answer = tweet(x, text)
    assert answer.status == status
    if status == 400:
        body = answer.json()
        assert body["title"] == "Invalid Request"
        assert body["type"] == "https://api.twitter.com/2/problems/invalid-request"
        assert body["detail"] == "One or more parameters to your request was invalid."
        assert body["errors"][0]["message"]
        assert x.stats()["accepted_messages"] == 0


def test_x_rate_limit_429_headers(x: XEmulator) -> None:
    x.set_faults(Faults(rate_limit=1, rate_window_s=30))
    ok = tweet(x, "first")
    assert ok.status == 201
    assert ok.headers["x-rate-limit-limit"] == "1"
    assert ok.headers["x-rate-limit-remaining"] == "0"
    limited = tweet(x, "second")
    assert limited.status == 429
    assert limited.json() == {
        "title": "Too Many Requests",
        "detail": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
    }
    assert limited.headers["x-rate-limit-limit"] == "1"
    assert limited.headers["x-rate-limit-remaining"] == "0"
    assert time.time() < int(limited.headers["x-rate-limit-reset"]) <= time.time() + 31
    assert not x.accepted("second")


def test_x_lost_response_then_reconcile(x: XEmulator) -> None:
    x.set_faults(Faults(lost_response_rate=1.0))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        tweet(x, "Posted but the answer was lost")
    x.set_faults(Faults())
    me = call(x.url, "GET", "/2/users/me", headers=x_auth()).json()["data"]
    assert me["name"] == "Drill Account"
    assert me["username"] == "crisiscomms_drill"
    recent = call(x.url, "GET", f"/2/users/{me['id']}/tweets?max_results=5", headers=x_auth())
    assert recent.status == 200
    assert [t["text"] for t in recent.json()["data"]] == ["Posted but the answer was lost"]
    assert recent.json()["meta"]["result_count"] == 1
    # A blind retry is refused as a duplicate and counted.
    assert tweet(x, "Posted but the answer was lost").status == 403
    assert x.stats()["duplicates"] == 1


def test_x_user_tweets_newest_first(x: XEmulator) -> None:
    ids = [tweet(x, f"post {i}").json()["data"]["id"] for i in range(7)]
    answer = call(x.url, "GET", f"/2/users/{x.user_id}/tweets?max_results=5", headers=x_auth())
    data = answer.json()["data"]
    assert [t["id"] for t in data] == ids[::-1][:5]
    assert all(t["created_at"].endswith("Z") for t in data)
    assert (
        call(x.url, "GET", f"/2/users/{x.user_id}/tweets?max_results=2", headers=x_auth()).status
        == 400
    )
    assert call(x.url, "GET", f"/2/users/{x.user_id}/tweets", headers=x_auth("no")).status == 401


def test_x_control_endpoints_and_export(x: XEmulator, tmp_path: Path) -> None:
    post_id = tweet(x, "Resolved. Thanks for your patience.").json()["data"]["id"]
    assert call(x.url, "GET", f"/_emulator/keys/{post_id}").json() == {
        "key": post_id,
        "accepted": True,
        "count": 1,
    }
    stats = call(x.url, "GET", "/_emulator/stats").json()
    assert stats["accepted_messages"] == 1 and stats["requests"] == 1
    records = call(x.url, "GET", "/_emulator/received").json()
    assert records[0]["id"] == post_id
    path = tmp_path / "x.jsonl"
    assert x.export_jsonl(path) == 1
    (line,) = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert set(record) == {"channel", "id", "text", "reply_to", "received_at"}
    assert record["channel"] == "x"
    assert record["text"] == "Resolved. Thanks for your patience."


def test_tweepy_client_against_emulator(x: XEmulator) -> None:
    tweepy = pytest.importorskip("tweepy")
    requests = pytest.importorskip("requests")

    class EmulatorSession(requests.Session):
        """tweepy hard-codes https://api.twitter.com in BaseClient.request; rewrite it."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            prefix = "https://api.twitter.com"
            if url.startswith(prefix):
                url = x.url + url[len(prefix) :]
            return super().request(method, url, *args, **kwargs)

    app = tweepy.Client(bearer_token=X_TOKEN)
    app.session = EmulatorSession()
    created = app.create_tweet(text="via tweepy bearer", user_auth=False)
    assert len(created.data["id"]) == 19

    user = tweepy.Client(
        consumer_key=X_CONSUMER, consumer_secret="s", access_token="t", access_token_secret="ts"
    )
    user.session = EmulatorSession()
    assert user.create_tweet(text="via tweepy oauth1").data["text"] == "via tweepy oauth1"
    assert user.get_me().data.username == "crisiscomms_drill"
    with pytest.raises(tweepy.errors.Forbidden):
        user.create_tweet(text="via tweepy oauth1")
    x.set_faults(Faults(rate_limit=0))
    with pytest.raises(tweepy.errors.TooManyRequests):
        user.create_tweet(text="limited")


# --------------------------------------------------------------------------------------------
# The pair


def test_start_emulators_pair_context_manager() -> None:
    with start_emulators(sendgrid_key="k", x_token="t") as emulators:
        assert emulators.sendgrid.url.startswith("http://127.0.0.1:")
        assert emulators.sendgrid.port != emulators.x.port
        assert call(emulators.x.url, "GET", "/2/users/me", headers=x_auth("t")).status == 200
        body = copy.deepcopy(mail_body())
        assert (
            call(emulators.sendgrid.url, "POST", "/v3/mail/send", body, headers=sg_auth("k")).status
            == 202
        )
        url = emulators.sendgrid.url
    with pytest.raises(ConnectionRefusedError):
        call(url, "GET", "/_emulator/stats")


# --------------------------------------------------------------------------------------------
# Garbage answers and identity counts


def test_garbage_answer_records_then_sends_a_body_that_is_not_json(sg: SendGridEmulator) -> None:
    sg.set_faults(Faults(garbage_rate=1.0, seed=3))
    outcomes = []
    for n in range(8):
        try:
            answer = mail_send(sg, mail_body(f"g{n}@example.com", key=f"garbage-{n}"))
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError):
            outcomes.append("truncated")
            continue
        assert answer.status == 202
        with pytest.raises(ValueError):
            json.loads(answer.body)
        outcomes.append("garbage")
    assert set(outcomes) == {"garbage", "truncated"}  # both kinds are drawn
    assert all(sg.accepted(f"garbage-{n}") for n in range(8))  # recorded before the answer
    dropped = sg.stats()["dropped"]
    assert dropped.get("garbage", 0) + dropped.get("truncated", 0) == 8


def test_truncated_x_answer_still_records_the_post(x: XEmulator) -> None:
    x.set_faults(Faults(garbage_rate=1.0, seed=5))
    for n in range(6):
        try:
            answer = tweet(x, f"garbage post {n}")
            assert answer.status == 201
            with pytest.raises(ValueError):
                answer.json()
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError):
            pass
    assert x.stats()["accepted_messages"] == 6


def test_garbage_rate_is_validated_with_the_other_rates() -> None:
    with pytest.raises(ValueError, match="garbage_rate"):
        Faults(garbage_rate=1.5)
    with pytest.raises(ValueError, match="> 1"):
        Faults(error_rate=0.6, garbage_rate=0.6)
    assert Faults.from_dict({"garbage_rate": 0.2}).garbage_rate == 0.2


def test_addresses_counts_distinct_and_repeated_recipients_across_keys(
        sg: SendGridEmulator) -> None:
    assert mail_send(sg, mail_body("A@example.com", "b@example.com", key="k-a")).status == 202
    assert mail_send(sg, mail_body("a@example.com", key="k-b")).status == 202  # another key
    answer = call(sg.url, "GET", "/_emulator/addresses").json()
    assert answer == {"distinct": 2, "repeated": ["a@example.com"],
                      "addresses": ["a@example.com", "b@example.com"]}


# --------------------------------------------------------------------------------------------
# X as production shows it: t.co links, escaped text, timelines with replies


def test_x_stores_links_as_t_co_and_escapes_the_text_it_returns(x: XEmulator) -> None:
    sent = "Down & out <b>: https://status.example.com/a-1 (ref A-1). Help: example.com/help!"
    shown = (r"Down &amp; out &lt;b&gt;: https://t\.co/\w{10} \(ref A-1\)\. "
             r"Help: https://t\.co/\w{10}!")
    created = tweet(x, sent).json()["data"]
    assert re.fullmatch(shown, created["text"]), created["text"]
    timeline = call(x.url, "GET", f"/2/users/{x.user_id}/tweets?max_results=5",
                    headers=x_auth()).json()["data"]
    assert [t["text"] for t in timeline] == [created["text"]]
    assert x.received()[0]["text"] == html.unescape(created["text"])  # the witness: as shown
    assert x.accepted(sent) and x.key_count(sent) == 1  # keyed by the text as sent
    assert tweet(x, sent).status == 403  # duplicate content is judged on the text as sent
    assert tweet(x, "mail support@example.com").json()["data"]["text"] == (
        "mail support@example.com")  # an address is not a link


def test_x_timeline_pages_since_id_and_referenced_tweets(x: XEmulator) -> None:
    root = tweet(x, "root").json()["data"]["id"]
    ids = [tweet(x, f"reply {n}", reply={"in_reply_to_tweet_id": root}).json()["data"]["id"]
           for n in range(7)]
    base = f"/2/users/{x.user_id}/tweets?max_results=5"
    first = call(x.url, "GET", f"{base}&tweet.fields=referenced_tweets,created_at",
                 headers=x_auth()).json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:5]
    assert all(t["referenced_tweets"] == [{"type": "replied_to", "id": root}]
               for t in first["data"])
    token = first["meta"]["next_token"]
    second = call(x.url, "GET", f"{base}&pagination_token={token}", headers=x_auth()).json()
    assert [t["id"] for t in second["data"]] == [ids[1], ids[0], root]
    assert "next_token" not in second["meta"] and "referenced_tweets" not in second["data"][0]
    newer = call(x.url, "GET", f"{base}&since_id={ids[4]}", headers=x_auth()).json()
    assert [t["id"] for t in newer["data"]] == [ids[6], ids[5]]
    assert call(x.url, "GET", f"{base}&pagination_token=nope", headers=x_auth()).status == 400


def test_pass_first_and_max_faults_target_one_request(x: XEmulator) -> None:
    x.set_faults(Faults(pass_first=1, lost_response_rate=1.0, max_faults=1))
    assert tweet(x, "part 1").status == 201
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        tweet(x, "part 2")
    assert tweet(x, "part 3").status == 201
    assert x.stats()["accepted_messages"] == 3 and x.stats()["dropped"] == {"lost_response": 1}
    assert Faults.from_dict({"pass_first": 2, "max_faults": None}).pass_first == 2
    with pytest.raises(ValueError, match="pass_first"):
        Faults.from_dict({"pass_first": 1.5})


# --------------------------------------------------------------------------------------------
# X: listening (mentions, conversation search, the crowd)


def test_x_crowd_posts_and_the_mentions_timeline(x: XEmulator) -> None:
    ours = tweet(x, "We are investigating").json()["data"]["id"]
    made = call(x.url, "POST", "/_emulator/posts",
                {"text": "when?", "username": "ann", "reply_to": ours, "lang": "en"})
    assert made.status == 201
    reply = made.json()["data"]
    assert reply["text"] == f"@{x.username} when?" and reply["conversation_id"] == ours
    assert reply["in_reply_to_user_id"] == x.user_id
    deep = x.add_post("me too", username="bob", reply_to=reply["id"], mention=False)
    loud = x.add_post(f"hey @{x.username.upper()} down?", username="cat")
    x.add_post("unrelated", username="dan")
    assert x.stats()["accepted_messages"] == 1 and x.crowd_size() == 4  # ours only in stats
    base = f"/2/users/{x.user_id}/mentions?max_results=5"
    page = call(x.url, "GET", f"{base}&tweet.fields=conversation_id,author_id&expansions=author_id",
                headers=x_auth())
    body = page.json()
    assert [t["id"] for t in body["data"]] == [loud["id"], reply["id"]]  # not deep, not dan
    assert {u["username"] for u in body["includes"]["users"]} == {"ann", "cat"}
    assert page.headers["x-rate-limit-remaining"] == "449"
    bare = call(x.url, "GET", base, headers=x_auth()).json()
    assert "includes" not in bare and "conversation_id" not in bare["data"][0]
    found = call(x.url, "GET", f"/2/tweets/search/recent?query=conversation_id:{ours}"
                 "&tweet.fields=author_id", headers=x_auth()).json()
    assert [t["id"] for t in found["data"]] == [deep["id"], reply["id"], ours]
    assert found["data"][-1]["author_id"] == x.user_id


@pytest.mark.parametrize(("path", "message"), [
    ("/2/users/{me}/mentions?max_results=4", "between 5 and 100"),
    ("/2/users/{me}/mentions?since_id=abc", "since_id"),
    ("/2/users/{me}/mentions?pagination_token=nope", "pagination_token"),
    ("/2/tweets/search/recent?query=from:ann", "conversation_id"),
    ("/2/tweets/search/recent?query=conversation_id:1&max_results=5", "between 10 and 100"),
])
def test_x_listening_reads_refuse_bad_parameters(x: XEmulator, path: str, message: str) -> None:
    answer = call(x.url, "GET", path.format(me=x.user_id), headers=x_auth())
    assert answer.status == 400 and message in answer.json()["errors"][0]["message"]
    assert "x-rate-limit-remaining" in answer.headers


@pytest.mark.parametrize(("body", "message"), [
    ({"text": "hi", "username": "bad name"}, "username"),
    ({"text": "hi", "username": "crisiscomms_drill"}, "our own account"),
    ({"text": "", "username": "ann"}, "text"),
    ({"text": "hi", "username": "ann", "reply_to": "123"}, "no post 123"),
    ({"text": "hi", "username": "ann", "colour": "red"}, "unknown fields: colour"),
])
def test_x_crowd_post_refuses_bad_input(x: XEmulator, body: dict[str, Any],
                                        message: str) -> None:
    answer = call(x.url, "POST", "/_emulator/posts", body)
    assert answer.status == 400 and message in answer.json()["error"]
    assert x.crowd_size() == 0


def test_x_listening_read_budget_answers_429_until_its_reset(x: XEmulator) -> None:
    x.set_read_budget(limit=1, window_s=30)
    path = f"/2/users/{x.user_id}/mentions"
    assert call(x.url, "GET", path, headers=x_auth()).headers["x-rate-limit-remaining"] == "0"
    limited = call(x.url, "GET", path, headers=x_auth())
    assert limited.status == 429
    assert time.time() < int(limited.headers["x-rate-limit-reset"]) <= time.time() + 31
    search = call(x.url, "GET", "/2/tweets/search/recent?query=conversation_id:1",
                  headers=x_auth())
    assert search.status == 200  # each endpoint has its own budget
    assert [r.status for r in x.reads("mentions")] == [200, 429]
    x.reset()
    assert x.reads() == [] and call(x.url, "GET", path, headers=x_auth()).status == 200
