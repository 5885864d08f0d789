"""X listening's pure parts (issue 11): cursors, the rate gate, paging from a cursor, linking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from crisiscomms.reactions.models import ReactionSource
from crisiscomms.reactions.sources.cursors import TimelineCursor
from crisiscomms.reactions.sources.x_client import (
    DEFAULT_429_WAIT_S,
    MAX_WAIT_S,
    Page,
    RateGate,
    RateLimited,
    XReadError,
    XUser,
)
from crisiscomms.reactions.sources.x_mentions import (
    OpenIncident,
    OurPost,
    Threads,
    mentioned_incident,
    reaction_of,
    read_timeline,
)


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cursor_round_trip_and_damaged_values_start_over() -> None:
    cursor = TimelineCursor("10", "5", "20")
    assert TimelineCursor.loads(cursor.dumps()) == cursor and cursor.catching_up
    assert TimelineCursor.loads(TimelineCursor("10").dumps()) == TimelineCursor("10")
    for bad in (None, "", "{", "[1]", '{"since_id": "drop table"}'):
        assert TimelineCursor.loads(bad) == TimelineCursor()


def test_the_gate_closes_on_a_spent_budget_and_on_a_429_and_never_for_ever() -> None:
    clock = Clock()
    gate = RateGate(clock=clock)
    assert gate.observe("mentions", {"x-rate-limit-remaining": "3",
                                     "x-rate-limit-reset": "1300"}, limited=False) is None
    assert gate.blocked_until("mentions") is None
    assert gate.observe("mentions", {"x-rate-limit-remaining": "0",
                                     "x-rate-limit-reset": "1300"}, limited=False) == 1300
    assert gate.blocked_until("mentions") == 1300 and gate.blocked_until("search") is None
    clock.now = 1300.5
    assert gate.blocked_until("mentions") is None
    assert gate.observe("search", {}, limited=True) == clock.now + DEFAULT_429_WAIT_S
    assert gate.observe("me", {"x-rate-limit-reset": "99999999"},
                        limited=True) == clock.now + MAX_WAIT_S
    gate.close("mentions", clock.now - 1)  # a reset in the past closes nothing
    assert gate.blocked_until("mentions") is None
    gate.close("mentions", clock.now + 10)
    assert gate.blocked_until("mentions") == clock.now + 10


def pages(ids: Sequence[int], size: int) -> dict[str | None, Page]:
    """An X-like newest-first timeline of ``ids``, paged by ``size`` (token -> page)."""
    ordered = sorted(ids, reverse=True)
    out: dict[str | None, Page] = {}
    for start in range(0, len(ordered), size):
        chunk = ordered[start:start + size]
        token = None if start == 0 else f"t{start}"
        nxt = f"t{start + size}" if start + size < len(ordered) else None
        out[token] = Page(tuple({"id": str(i)} for i in chunk), {}, nxt, str(chunk[0]),
                          str(chunk[-1]))
    return out


def timeline(ids: Sequence[int], size: int = 3, *, fail_at: int | None = None,
             error: Exception | None = None) -> Any:
    calls: list[tuple[str | None, str | None, str | None]] = []

    def fetch(since: str | None, until: str | None, token: str | None) -> Page:
        calls.append((since, until, token))
        if fail_at is not None and len(calls) == fail_at:
            raise error or RateLimited("mentions", 0.0)
        visible = [i for i in ids if (since is None or i > int(since))
                   and (until is None or i < int(until))]
        return pages(visible, size).get(token) or Page((), {}, None, None, None)

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


def read_ids(read: Any) -> list[int]:
    return [int(p["id"]) for p in read.posts]


def test_a_backlog_over_the_page_cap_is_read_on_below_then_since_moves_up() -> None:
    ids = list(range(1, 11))
    fetch = timeline(ids)
    first = read_timeline(fetch, TimelineCursor(), max_pages=2)
    assert read_ids(first) == [10, 9, 8, 7, 6, 5]
    assert first.cursor == TimelineCursor(None, "5", "10")
    ids += [11, 12]  # new posts while the backlog is read
    second = read_timeline(fetch, first.cursor, max_pages=2)
    assert read_ids(second) == [4, 3, 2, 1] and second.cursor == TimelineCursor("10")
    third = read_timeline(fetch, second.cursor, max_pages=2)
    assert read_ids(third) == [12, 11] and third.cursor == TimelineCursor("12")
    assert read_timeline(fetch, third.cursor, max_pages=2).posts == []


def test_a_rate_limit_mid_pages_keeps_what_was_read_and_the_place() -> None:
    fetch = timeline(list(range(1, 11)), fail_at=2)
    read = read_timeline(fetch, TimelineCursor("0"), max_pages=10)
    assert read_ids(read) == [10, 9, 8] and isinstance(read.stopped, RateLimited)
    assert read.cursor == TimelineCursor("0", "8", "10")
    with pytest.raises(XReadError):
        read_timeline(timeline([1, 2], fail_at=1, error=XReadError("X mentions: 503")),
                      TimelineCursor(), max_pages=2)


def test_an_empty_timeline_keeps_its_cursor() -> None:
    assert read_timeline(timeline([]), TimelineCursor("7"), max_pages=2).cursor == \
        TimelineCursor("7")


def test_a_mention_names_its_incident_or_falls_to_the_only_open_one() -> None:
    one, twelve = OpenIncident(1, "INC-1"), OpenIncident(2, "INC-12")
    assert mentioned_incident("about inc-12 again", [one, twelve]) == 2
    assert mentioned_incident("about INC-1, really", [one, twelve]) == 1
    assert mentioned_incident("INC-123 is not INC-12", [one, twelve]) == 2
    assert mentioned_incident("site down?", [one, twelve]) is None
    assert mentioned_incident("site down?", [one]) == 1
    assert mentioned_incident("site down?", []) is None


def threads() -> Threads:
    posts = [OurPost("100", 1, 11, 5, "en", "100"), OurPost("200", 2, 12, 5, "en", "100"),
             OurPost("150", 3, 13, 5, "ja", "150")]
    t = Threads()
    for p in posts:
        t.by_post[p.post_id] = p
        t.by_root.setdefault(p.root, []).append(p)
    return t


def test_replies_link_to_the_post_they_answer_or_the_latest_of_ours_before_them() -> None:
    t = threads()
    assert t.answered("100", "100", "300") == t.by_post["100"]  # answers the first post
    assert t.answered("999", "100", "300") == t.by_post["200"]  # deeper: our latest before
    assert t.answered("999", "100", "180") == t.by_post["100"]
    assert t.answered(None, "150", "160") == t.by_post["150"]
    assert t.answered("999", "777", "300") is None


def test_a_post_becomes_a_reaction_as_typed() -> None:
    t = threads()
    users = {"42": XUser("42", "ann", "Ann")}
    reply = reaction_of({"id": "300", "text": "@crisiscomms_drill a &amp; b &lt;3",
                         "author_id": "42", "conversation_id": "100",
                         "referenced_tweets": [{"type": "replied_to", "id": "200"}],
                         "lang": "und", "created_at": "2026-12-01T00:00:00.000Z"}, users, t, [])
    assert reply.source == ReactionSource.x_reply and reply.text.endswith("a & b <3")
    assert (reply.author, reply.author_name, reply.language) == ("@ann", "Ann", None)
    assert (reply.message_id, reply.delivery_id, reply.locale, reply.incident_id) == \
        (12, 2, "en", 5)
    assert reply.received_at is not None and reply.received_at.tzinfo is not None
    mention = reaction_of({"id": "301", "text": "hi", "author_id": "43", "lang": "fr"},
                          users, t, [OpenIncident(9, "INC-9")])
    assert mention.source == ReactionSource.x_mention and mention.author == "x:43"
    assert (mention.incident_id, mention.message_id, mention.language) == (9, None, "fr")
