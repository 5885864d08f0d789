"""X mentions and replies (issue 11) through the real X emulator on loopback, into a real
SQLite database: stored once across polls, pages, a 429 honoured, replies linked to the
message and locale they answer, a restart resuming from the stored cursor."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import pending_ids
from crisiscomms.delivery.models import Delivery
from crisiscomms.delivery.sender import publish_deliveries
from crisiscomms.identity.identities import system_identity
from crisiscomms.incident.models import Message
from crisiscomms.incident.service import plan_bundle, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.models import ListenCursor, Reaction, ReactionSource
from crisiscomms.reactions.sources.x_client import XReader
from crisiscomms.reactions.sources.x_mentions import PollResult, poll_once, run_x_poller
from crisiscomms.testing.crowd import X_MENTION, X_REPLY, Crowd, CrowdMix, published_from_db
from crisiscomms.testing.emulators import EmulatorPair, XEmulator

pytestmark = pytest.mark.integration

REF = "INC-LISTEN-1"


def publish_x(settings: Settings, engine: Engine, ref: str = REF) -> dict[str, str]:
    """Trigger the outage playbook's first stage and publish its X posts to the emulator;
    returns each locale's post id."""
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts={**facts, "incident_ref": ref}, actor=system_identity("test"))
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    with Session(engine) as s:
        x_rows = pending_ids(s, bundle.message_ids)["x"]
    channels = build_channels(settings)
    report = publish_deliveries(engine, {"x": channels["x"]}, x_rows,
                                playbooks_dir=settings.playbooks_dir, max_attempts=2)
    assert report.skipped == 0
    with Session(engine) as s:
        rows = s.exec(select(Delivery).where(col(Delivery.id).in_(x_rows))).all()
        posts = {r.locale: (r.provider_id or "").split(",")[0] for r in rows}
    assert all(posts.values()) and len(posts) == 5
    return posts


def poll(settings: Settings, engine: Engine, reader: XReader, **kwargs: object) -> PollResult:
    with Session(engine, expire_on_commit=False) as session:
        return poll_once(session, reader, settings, **kwargs)  # type: ignore[arg-type]


def reactions(engine: Engine) -> list[Reaction]:
    with Session(engine) as s:
        return list(s.exec(select(Reaction).order_by(col(Reaction.id))).all())


@pytest.fixture
def ws(workspace: tuple[Settings, Engine], emulators: EmulatorPair
       ) -> tuple[Settings, Engine, XEmulator, XReader]:
    settings, engine = workspace
    reader = XReader.from_settings(settings)
    assert reader is not None
    return settings, engine, emulators.x, reader


@pytest.fixture
def ws_backends(backend_workspace: tuple[Settings, Engine], emulators: EmulatorPair
                ) -> tuple[Settings, Engine, XEmulator, XReader]:
    """``ws`` on SQLite and on a throwaway PostgreSQL (insert-or-ignore, cursors)."""
    settings, engine = backend_workspace
    reader = XReader.from_settings(settings)
    assert reader is not None
    return settings, engine, emulators.x, reader


def test_mentions_are_stored_once_across_two_polls(
        ws_backends: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws_backends
    for n in range(3):
        x.add_post(f"@{x.username} is the site down? #{n}", username=f"fan{n}")
    x.add_post("not about us", username="other")
    first = poll(settings, engine, reader)
    assert (first.read, first.stored, first.errors) == (3, 3, ())
    mentions_before = len(x.reads("mentions"))
    second = poll(settings, engine, reader)
    assert (second.read, second.stored) == (0, 0)  # since_id: nothing read again
    assert len(x.reads("mentions")) == mentions_before + 1
    x.add_post(f"@{x.username} still waiting 3 hours", username="fan9")
    third = poll(settings, engine, reader)
    assert (third.read, third.stored) == (1, 1)
    stored = reactions(engine)
    assert len(stored) == 4 and len({r.source_id for r in stored}) == 4
    assert {r.source for r in stored} == {ReactionSource.x_mention}
    assert stored[-1].author == "@fan9" and stored[-1].text.endswith("still waiting 3 hours")
    # a mention stays unlinked when no incident is open
    assert all(r.incident_id is None for r in stored)


def test_pagination_reads_every_page_and_a_page_cap_resumes_below_the_backlog(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws
    ids = [x.add_post(f"@{x.username} mention {n}", username=f"user{n}")["id"] for n in range(23)]
    capped = settings.model_copy(update={"x_poll_max_pages": 2})
    first = poll(capped, engine, reader, page_size=5)
    assert (first.pages, first.stored, first.backlog) == (2, 10, True)
    late = [x.add_post(f"@{x.username} late {n}", username=f"late{n}")["id"] for n in range(3)]
    results = [poll(capped, engine, reader, page_size=5) for _ in range(3)]
    assert [r.stored for r in results] == [10, 3, 3]  # the backlog below, then what came later
    assert not results[-1].backlog
    assert sorted(r.source_id for r in reactions(engine)) == sorted(ids + late)
    assert poll(capped, engine, reader, page_size=5).read == 0
    whole = poll(settings, engine, reader, page_size=5)
    assert whole.read == 0
    # every page request carried the query's since_id or its backlog's until_id after the first
    assert len(x.reads("mentions")) == 2 + 2 + 1 + 1 + 1 + 1


def test_a_429_is_honoured_no_request_before_the_reset(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws
    for n in range(8):
        x.add_post(f"@{x.username} outage? {n}", username=f"u{n}")
    x.set_read_budget(limit=2, window_s=3.0)
    reader.me()
    token = settings.x_bearer_token.get_secret_value() if settings.x_bearer_token else ""
    for _ in range(2):  # someone else spends the window's budget
        assert requests.get(f"{x.url}/2/users/{x.user_id}/mentions",
                            headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
    first = poll(settings, engine, reader, page_size=5)
    assert first.stored == 0 and first.backlog and "mentions" in first.rate_limited
    assert [r.status for r in x.reads("mentions")] == [200, 200, 429]
    reset = first.rate_limited["mentions"].timestamp()
    assert first.next_poll_at.timestamp() >= reset
    assert poll(settings, engine, reader, page_size=5).queries == 0
    restarted = XReader.from_settings(settings)  # a new process learns the reset from the db
    assert restarted is not None
    assert poll(settings, engine, restarted, page_size=5).queries == 0
    assert len(x.reads("mentions")) == 3  # no request before the reset
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    last = poll(settings, engine, restarted, page_size=5)
    assert last.stored == 8 and last.pages == 2
    late = x.reads("mentions")[3:]
    assert [r.status for r in late] == [200, 200] and all(r.at >= reset for r in late)
    # remaining: 0 closes the endpoint before X has to answer 429
    assert "mentions" in last.rate_limited
    assert poll(settings, engine, restarted, page_size=5).queries == 0
    assert len(x.reads("mentions")) == 5


def test_replies_are_linked_to_the_message_and_locale_they_answer(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws
    posts = publish_x(settings, engine)
    reply_ja = x.add_post("いつ直りますか？", username="taro", reply_to=posts["ja"], lang="ja")
    reply_es = x.add_post("¿Cuándo lo arreglan?", username="ana", reply_to=posts["es"],
                          lang="es")
    deep = x.add_post("same here, nobody answers", username="bob", reply_to=reply_es["id"],
                      mention=False)
    named = x.add_post(f"@{x.username} is {REF} why my app fails?", username="cat")
    not_ours = x.add_post("any news?", username="dan")  # neither mentions nor replies to us
    result = poll(settings, engine, reader)
    assert result.errors == () and result.queries == 1 + 5  # mentions + five conversations
    by_id = {r.source_id: r for r in reactions(engine)}
    assert not_ours["id"] not in by_id
    with Session(engine) as s:
        message_of = {m.id: m for m in s.exec(select(Message)).all()}
    for post, locale in ((reply_ja, "ja"), (reply_es, "es"), (deep, "es")):
        reaction = by_id[post["id"]]
        assert reaction.source == ReactionSource.x_reply
        assert reaction.locale == locale and reaction.channel == "x"
        assert reaction.message_id is not None
        message = message_of[reaction.message_id]
        assert (message.locale, message.stage) == (locale, "acknowledge")
        assert reaction.incident_id == message.incident_id
    assert by_id[deep["id"]].text == "same here, nobody answers"  # found by the search
    assert by_id[reply_ja["id"]].language == "ja"
    mention = by_id[named["id"]]
    assert mention.source == ReactionSource.x_mention and mention.message_id is None
    assert mention.incident_id == by_id[reply_ja["id"]].incident_id  # named by its ref
    assert result.linked == 3 and result.stored == 4
    assert poll(settings, engine, reader).stored == 0


def test_a_restart_resumes_from_the_stored_cursor(
        ws_backends: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws_backends
    posts = publish_x(settings, engine)
    x.add_post("first", username="ann", reply_to=posts["en"])
    x.add_post(f"@{x.username} second", username="bob")
    assert poll(settings, engine, reader).stored == 2
    reader.close()
    with Session(engine) as s:
        keys = {c.key for c in s.exec(select(ListenCursor)).all()}
    assert any(k.startswith("mentions:") for k in keys)
    assert sum(k.startswith("conversation:") for k in keys) == 5
    x.add_post("while it was down", username="cat", reply_to=posts["fr"], mention=False)
    restarted = XReader.from_settings(settings)  # a new process: a fresh client and gate
    assert restarted is not None
    result = poll(settings, engine, restarted)
    assert (result.read, result.stored) == (1, 1)  # only what came meanwhile
    assert len(reactions(engine)) == 3


def test_bad_credentials_are_an_error_not_a_crash(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, _reader = ws
    wrong = XReader(bearer_token=SecretStr("not-the-token"), base_url=x.url, timeout_s=2)
    result = poll(settings, engine, wrong)
    assert result.stored == 0 and result.errors and "401" in result.errors[0]
    assert "not-the-token" not in " ".join(result.errors)



@pytest.mark.usefixtures("prefect_server")
def test_the_prefect_flow_polls_from_the_stored_cursor(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    from crisiscomms.flows.listen_x import listen_x

    _settings, engine, x, _reader = ws
    x.add_post(f"@{x.username} when will it be fixed?", username="ann")
    first = listen_x(polls=1, playbook="outage")
    assert first["configured"] and first["polls"][0]["stored"] == 1
    x.add_post(f"@{x.username} thanks, works again", username="bob")
    second = listen_x(polls=2)
    assert [p["stored"] for p in second["polls"]] == [1, 0]
    assert len(reactions(engine)) == 2


def test_the_poller_thread_stops_when_asked(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws
    x.add_post(f"@{x.username} anyone there?", username="ann")
    stop = threading.Event()
    seen: list[PollResult] = []

    def record(result: PollResult) -> None:
        seen.append(result)
        stop.set()

    thread = threading.Thread(target=run_x_poller, args=(engine, settings),
                              kwargs={"stop": stop, "reader": reader, "on_result": record},
                              daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [r.stored for r in seen] == [1]


def test_a_crowd_on_x_is_stored_once_and_linked_as_it_answered(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws
    publish_x(settings, engine)
    with Session(engine) as s:
        incident_id = s.exec(select(Message.incident_id)).first()
        assert incident_id is not None
        pub = published_from_db(s, incident_id, our_address=settings.email_from)
    crowd = Crowd(pub, seed=11, mix=CrowdMix(sources={X_REPLY: 0.7, X_MENTION: 0.3}))
    items = crowd.generate(400)
    middle = items[200].at_s
    first = crowd.play_x(items, x, window=(0.0, middle))  # the crowd arrives in two waves
    assert len(first) == 200
    result = poll(settings, engine, reader)
    assert result.errors == () and result.stored == 200
    assert len(crowd.play_x(items, x, window=(middle, float("inf")))) == 200
    assert crowd.play_x(items, x) == {}  # nothing is posted twice
    ids = crowd.posted
    assert len(ids) == 400 and any(i.reply_to_item is not None and i.n >= 200 and
                                   i.reply_to_item < 200 for i in items)
    result = poll(settings, engine, reader)
    while result.backlog:  # more pages than one poll reads
        result = poll(settings, engine, reader)
    assert result.errors == ()
    by_post = {r.source_id: r for r in reactions(engine)}
    assert len(by_post) == 400
    for item in items:
        reaction = by_post[ids[item.n]]
        assert reaction.source == item.source, item
        assert reaction.message_id == item.expected.message_id, item
        assert reaction.locale == item.expected.locale
        assert reaction.incident_id == incident_id  # mentions: the one open incident
        assert reaction.author == item.author and reaction.text.endswith(item.text)


def test_a_small_search_budget_serves_every_conversation_in_turn(
        ws: tuple[Settings, Engine, XEmulator, XReader]) -> None:
    settings, engine, x, reader = ws
    posts = publish_x(settings, engine)
    for locale, post in posts.items():  # found by conversation searches only
        reply = x.add_post(f"in {locale}", username=f"a_{locale}", reply_to=post)
        x.add_post(f"deep in {locale}", username=f"b_{locale}", reply_to=reply["id"],
                   mention=False)
    x.set_read_budget(limit=3, window_s=2.0)

    def searched() -> set[str]:
        with Session(engine) as s:
            return {c.key for c in s.exec(select(ListenCursor)).all()
                    if c.key.startswith("conversation:")}

    first = poll(settings, engine, reader)
    assert first.stored == 5 + 3 and "search" in first.rate_limited and len(searched()) == 3
    time.sleep(max(0.0, first.rate_limited["search"].timestamp() - time.time()) + 0.05)
    second = poll(settings, engine, reader)
    assert second.stored == 2 and len(searched()) == 5  # the two left out went first
    deep = [r for r in reactions(engine) if r.author.startswith("@b_")]
    assert sorted(r.locale or "" for r in deep) == sorted(posts)


def test_the_token_never_reaches_the_logs(ws: tuple[Settings, Engine, XEmulator, XReader],
                                          caplog: pytest.LogCaptureFixture) -> None:
    settings, engine, x, reader = ws
    x.add_post(f"@{x.username} hello", username="ann")
    with caplog.at_level(logging.DEBUG):
        assert poll(settings, engine, reader).stored == 1
    token = settings.x_bearer_token.get_secret_value() if settings.x_bearer_token else "?"
    assert "Making API request" in caplog.text  # tweepy did log its request headers...
    assert token not in caplog.text and "Bearer [redacted]" in caplog.text  # ...blanked
