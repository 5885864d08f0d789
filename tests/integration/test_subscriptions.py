"""Status page subscriptions against real servers: the FastAPI app under uvicorn on loopback,
the SendGrid emulator for the confirmation email, SQLite for the subscribers; and the audience
of an incident update filtered by the components subscribers follow."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from repo_paths import PROJECT_ROOT
from sqlmodel import Session, select

from crisiscomms.api.subscriptions import create_app
from crisiscomms.audience.models import Recipient
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import CUSTOMER_LIST
from crisiscomms.delivery.ledger import stream_audience
from crisiscomms.identity.identities import Identity, system_identity
from crisiscomms.statuspage import model
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, start_emulators

pytestmark = pytest.mark.integration
SG_KEY = "SG.subscriptions-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def emus() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SG_KEY, x_token="x-sub-token") as pair:
        yield pair


@pytest.fixture
def server(tmp_path: Path, emus: EmulatorPair,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Settings]]:
    emus.reset()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    for key, value in {
        **workspace_environment(tmp_path / "data", emus, SG_KEY, "x-sub-token",
                                database_url=f"sqlite:///{tmp_path / 'subs.db'}"),
        "CRISISCOMMS_SUBSCRIPTIONS_URL": base,
        "CRISISCOMMS_HTTP_TIMEOUT_S": "2",
        "CRISISCOMMS_SUBSCRIBE_MAILBOX_BURST": "5",  # limits: test_subscriptions_hardening
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    StatusPage(settings.resolved_status_page_dir, page_name="Example Status",
               page_url=settings.status_page_url).change(
        lambda state: model.ensure_components(state, ["API", "Dashboard"],
                                              "2026-11-23T09:00:00.000+00:00"))
    app = create_app(settings)
    APPS[base] = app
    try:
        with serve_app(app, port, name="subscriptions"):
            yield base, settings
    finally:
        app.state.subscribe_queue.stop()
        APPS.pop(base, None)


APPS: dict[str, Any] = {}


def settle(base: str) -> None:
    """Wait until the app's confirmation emails of the requests answered so far are sent."""
    assert APPS[base].state.subscribe_queue.join(timeout_s=30), "confirmations still queued"


def press_button(url: str, base: str) -> httpx.Response:
    """What a reader does with a link: open the page (nothing changes), press its button (a
    same-origin form post carrying the page's form token)."""
    shown = httpx.get(url, timeout=5)
    assert shown.status_code == 200, shown.text
    token = re.search(r'name="form_token" value="([0-9a-f]+)"', shown.text)
    assert token is not None
    return httpx.post(url, data={"form_token": token.group(1)}, headers={"Origin": base},
                      timeout=5)


def subscribers(settings: Settings) -> list[Recipient]:
    from crisiscomms.core.database import make_engine

    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as s:
        rows = list(s.exec(select(Recipient)))
    engine.dispose()
    return rows


def test_double_opt_in_through_the_form_and_email(server: tuple[str, Settings],
                                                  emus: EmulatorPair) -> None:
    base, settings = server
    form = {"email": "Reader@Example.org", "components": ["API"], "locale": "de"}
    reply = httpx.post(f"{base}/v1/subscribe", data=form, timeout=5)
    assert reply.status_code == 202 and 'lang="de"' in reply.text
    assert "Bestätigungslink" in reply.text
    settle(base)
    (row,) = subscribers(settings)
    assert row.email == "reader@example.org" and row.consent is False
    assert row.components == "API" and row.confirmed_at is None
    (mail,) = emus.sendgrid.received()
    assert mail["to"] == "reader@example.org"
    assert mail["subject"] == "Confirm your subscription to Example Corp Status"
    confirm = re.search(r"(http://127\.0\.0\.1:\d+/v1/confirm/[\w-]+)", mail["text"])
    unsubscribe = re.search(r"(http://127\.0\.0\.1:\d+/v1/unsubscribe/[\w-]+)", mail["text"])
    assert confirm and unsubscribe and unsubscribe.group(1) in mail["html"]

    # a repeated request: same answer, no second email, no second row
    again = httpx.post(f"{base}/v1/subscribe", data=form, timeout=5)
    settle(base)
    assert again.status_code == 202 and len(emus.sendgrid.received()) == 1
    assert len(subscribers(settings)) == 1

    done = press_button(confirm.group(1), base)
    assert done.status_code == 200 and "abonniert" in done.text
    (row,) = subscribers(settings)
    assert row.consent is True and row.confirmed_at is not None and row.confirm_token is None
    used = httpx.get(confirm.group(1), timeout=5)
    assert used.status_code == 404 and "Traceback" not in used.text
    assert httpx.post(confirm.group(1), headers={"Origin": base},
                      timeout=5).status_code == 404  # single use

    # subscribed: asking again changes nothing and sends nothing
    assert httpx.post(f"{base}/v1/subscribe", json={"email": "reader@example.org"},
                      timeout=5).status_code == 202
    settle(base)
    assert len(emus.sendgrid.received()) == 1

    gone = press_button(unsubscribe.group(1), base)
    assert gone.status_code == 200
    (row,) = subscribers(settings)
    assert row.consent is False


def test_bad_requests_are_refused_without_error_pages(server: tuple[str, Settings],
                                                      emus: EmulatorPair) -> None:
    base, settings = server
    for bad in ("", "not-an-address", "a@b", "<script>@x.org", "a" * 250 + "@example.org",
                "x@example.org\nBcc: y@example.org"):
        reply = httpx.post(f"{base}/v1/subscribe", data={"email": bad}, timeout=5)
        assert reply.status_code == 400, bad
        assert "does not look right" in reply.text and "Traceback" not in reply.text
        assert "<script>" not in reply.text
    unknown = httpx.post(f"{base}/v1/subscribe",
                         json={"email": "ok@example.org", "components": ["Nope"]}, timeout=5)
    assert unknown.status_code == 400 and "Nope" in unknown.json()["message"]
    assert unknown.json()["field"] == "components" and unknown.json()["values"] == ["Nope"]
    bad_address = httpx.post(f"{base}/v1/subscribe", json={"email": "a@b"}, timeout=5)
    assert bad_address.status_code == 400 and bad_address.json()["field"] == "email"
    garbage = httpx.post(f"{base}/v1/subscribe", content=b"\xff\xfe{",
                         headers={"content-type": "application/json"}, timeout=5)
    assert garbage.status_code == 400
    assert httpx.get(f"{base}/v1/unsubscribe/nonsense", timeout=5).status_code == 404
    settle(base)
    assert subscribers(settings) == [] and emus.sendgrid.received() == []


def test_updates_reach_the_subscribers_of_the_affected_components(
    server: tuple[str, Settings],
) -> None:
    _, settings = server
    from crisiscomms.core.database import make_engine

    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as s:
        s.add_all([
            Recipient(email="all@example.org", consent=True),
            Recipient(email="api@example.org", consent=True, components="API"),
            Recipient(email="dash@example.org", consent=True, components="Dashboard"),
            Recipient(email="both@example.org", consent=True, components="API,Dashboard"),
            Recipient(email="pending@example.org", consent=False, components="API"),
        ])
        s.commit()
        by_id = {r.id: r.email for r in s.exec(select(Recipient))}

        def audience(components: list[str] | None) -> set[str]:
            return {by_id[rid] for rid, _ in stream_audience(s, recipients=CUSTOMER_LIST,
                                                             components=components)}

        assert audience(["API"]) == {"all@example.org", "api@example.org", "both@example.org"}
        assert audience(["Dashboard"]) == {"all@example.org", "dash@example.org",
                                           "both@example.org"}
        assert audience(None) == {"all@example.org", "api@example.org", "dash@example.org",
                                  "both@example.org"}
    engine.dispose()


# -- subscriber updates, end to end ------------------------------------------------------------


def _mails_to(emus: EmulatorPair, address: str) -> list[dict[str, Any]]:
    return [m for m in emus.sendgrid.received() if m["to"] == address]


@pytest.mark.usefixtures("prefect_server")
def test_subscribers_of_the_affected_component_get_each_update_once_until_they_unsubscribe(
    server: tuple[str, Settings], emus: EmulatorPair,
) -> None:
    """Readers subscribe through the page's form over HTTP (double opt-in), an incident on one
    component goes out through the Prefect flow to the SendGrid emulator: its subscribers and
    the customer list get it once each, with their own unsubscribe link; one click on it and
    the next update no longer reaches them."""
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.cli.common import publish
    from crisiscomms.core.database import make_engine
    from crisiscomms.incident.service import approve, trigger

    base, settings = server
    readers = {"api@example.org": ["API"], "dash@example.org": ["Dashboard"],
               "all@example.org": []}
    for address, components in readers.items():
        reply = httpx.post(f"{base}/v1/subscribe", timeout=5,
                           data={"email": address, "components": components, "locale": "en"})
        assert reply.status_code == 202, reply.text
        settle(base)
        (mail,) = _mails_to(emus, address)
        confirm = re.search(r"(http://127\.0\.0\.1:\d+/v1/confirm/[\w-]+)", mail["text"])
        assert confirm is not None
        assert press_button(confirm.group(1), base).status_code == 200
    assert httpx.post(f"{base}/v1/subscribe", data={"email": "pending@example.org",
                                                    "components": ["API"]},
                      timeout=5).status_code == 202  # never confirms
    settle(base)
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as s:
        s.add(Recipient(email="customer@example.org", name="Casey Customer", consent=True))
        s.commit()
        tokens = {r.email: r.unsubscribe_token for r in s.exec(select(Recipient))}
    emus.reset()

    facts = {**yaml.safe_load((PROJECT_ROOT / "playbooks/outage.yaml").read_text())[
        "drill_facts"], "incident_ref": "SUB-1", "components": ["API"]}
    first = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                    actor=system_identity("test"))
    assert first.approved  # the acknowledgement is auto_send
    result = publish("SUB-1", first.stage)
    assert not result.get("errors"), result
    wanted = {"api@example.org", "all@example.org", "customer@example.org"}
    received = emus.sendgrid.received()
    assert sorted(m["to"] for m in received) == sorted(wanted)  # each exactly once
    assert emus.sendgrid.stats()["duplicates"] == 0
    for mail in received:
        link = f"{base}/v1/unsubscribe/{tokens[mail['to']]}"
        assert link in mail["text"] and f'href="{link}"' in mail["html"], mail["to"]

    # one click (RFC 8058 POST, as a mail client sends it from List-Unsubscribe)
    clicked = httpx.post(f"{base}/v1/unsubscribe/{tokens['api@example.org']}",
                         data={"List-Unsubscribe": "One-Click"}, timeout=5)
    assert clicked.status_code == 200
    emus.sendgrid.reset()  # the others keep the acknowledgement's posts: the update replies
    update = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts={"incident_ref": "SUB-1"}, stage="update", actor=system_identity("test"))
    approve(engine, incident_ref=update.incident_ref, stage="update",
            approver=Identity("dana", "Dana (PR lead)", "key"),
            playbooks_dir=settings.playbooks_dir, settings=settings)
    result = publish("SUB-1", "update")
    assert not result.get("errors"), result
    assert sorted(m["to"] for m in emus.sendgrid.received()) == sorted(
        wanted - {"api@example.org"})
    engine.dispose()
