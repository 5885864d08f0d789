"""X mentions and replies: polled, stored once, linked to the post of ours they answer.

One poll (:func:`poll_once`) reads, each from its stored cursor (``ListenCursor``):

1. our **mentions** (``GET /2/users/:id/mentions``, ``since_id``, pages of up to 100), which on
   X include every direct reply to our posts;
2. the **conversations** of our posts (recent search ``conversation_id:<root>``), for the replies
   deeper in a thread that no longer mention us. Searched: every thread root of the incidents
   still open, or resolved less than ``settings.x_listen_after_resolved_h`` ago.

Each post found, except our own, becomes one ``Reaction``:

- **in a conversation of ours** (its ``conversation_id`` is the first post of one of our
  threads, or it answers one of our posts): source ``x_reply``, linked to the post it answers
  when that is ours, else to the latest of our posts in that thread before it (what the
  author had in front of them), and through the ledger row (``Delivery.provider_id``, every
  part's id of a thread) to the message, its locale and the incident;
- **otherwise**: source ``x_mention``, no message or locale. Its incident: the open incident
  whose reference it names; else, **when exactly one incident is open, that one** (a crisis is
  usually the only thing people mention us for while it lasts, and leaving such mentions
  unlinked would hide them from the incident's view); else none. Mentions from before an
  incident opened are still linked to it when they arrive during it: the poll cannot tell.

The classification depends on the post, not on the query that found it, so a reply found both
by the mentions timeline and by a conversation search is one reaction (unique by source and
post id).

**Cursors.** A query's cursor is saved with the reactions it covers, in one transaction per
query. A backlog larger than ``settings.x_poll_max_pages`` pages, or cut by a rate limit, is
remembered as ``until_id`` (oldest read) + ``newest_id``, and the next polls read on below it
before moving ``since_id`` forward: nothing is skipped and nothing is read twice.

**Rate limits.** The :class:`~crisiscomms.reactions.sources.x_client.RateGate` of the reader
remembers each endpoint's reset; a blocked endpoint is not asked until then, and
:attr:`PollResult.next_poll_at` says when polling is useful again.

Storing goes through :func:`crisiscomms.reactions.service.store_reactions` like every source
(triage in one batch, linking, insert ignoring duplicates); it commits the reactions before
the cursor moves, so a crash in between re-reads posts that are then ignored as duplicates.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from crisiscomms.core.clock import utcnow
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import PartProgress
from crisiscomms.delivery.models import Delivery
from crisiscomms.incident.models import Incident, IncidentStatus
from crisiscomms.reactions.models import ReactionSource
from crisiscomms.reactions.service import ReactionIn, store_reactions
from crisiscomms.reactions.sources.cursors import (
    TimelineCursor,
    load_cursor,
    load_cursors,
    save_cursor,
)
from crisiscomms.reactions.sources.x_client import (
    ENDPOINTS,
    ME,
    MENTIONS,
    SEARCH,
    Page,
    RateLimited,
    XReader,
    XReadError,
    XUser,
)
from crisiscomms.reactions.triage import Triager

CURSOR_SOURCE = "x"
"""``ListenCursor.source`` of this poller's timelines."""
RATE_SOURCE = "x-rate"
"""``ListenCursor.source`` of the endpoints' rate-limit resets (key: the endpoint), so a
restarted poller, or the next run of a scheduled flow, does not ask before X's reset either."""
LEDGER_CHANNEL = "x"
"""The ledger's name of the channel whose posts are answered (``XChannel.name``): the domain
may not import the channel registry, so the name is given here once, and :func:`poll_once`
takes it as a parameter."""
CLOSED = (IncidentStatus.resolved, IncidentStatus.postmortem)
_UNDETERMINED = frozenset({"und", "zxx", "qam", "qct", "qht", "qme", "qst"})
"""X's ``lang`` values that name no language (undetermined, no text, only mentions...)."""

log = logging.getLogger(__name__)


# -- our posts, from the ledger -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OurPost:
    """One of our posts: the ledger row that carries it and where it sits."""

    post_id: str
    delivery_id: int
    message_id: int
    incident_id: int
    locale: str
    root: str
    """The first post of its thread (the incident's first post in that language)."""


@dataclass
class Threads:
    """Every post of ours the ledger knows, by id and by thread root."""

    by_post: dict[str, OurPost] = field(default_factory=dict)
    by_root: dict[str, list[OurPost]] = field(default_factory=dict)
    """Oldest first."""
    listening_roots: list[str] = field(default_factory=list)
    """The roots of incidents still listened to (open, or resolved recently)."""

    def answered(self, replied_to: str | None, conversation_id: str | None,
                 post_id: str) -> OurPost | None:
        """The post of ours this post answers (directly, or within one of our threads)."""
        if replied_to is not None and replied_to in self.by_post:
            return self.by_post[replied_to]
        ours = self.by_post.get(conversation_id or "")
        if ours is None:
            return None
        thread = self.by_root.get(ours.root, [ours])
        before = [p for p in thread if _id_int(p.post_id) < _id_int(post_id)]
        return before[-1] if before else thread[0]


def _id_int(value: str) -> int:
    return int(value) if value.isdigit() else 0


def load_threads(session: Session, *, channel: str = LEDGER_CHANNEL,
                 listen_after_resolved: timedelta, now: datetime | None = None) -> Threads:
    """Our posts on ``channel`` from the ledger (``provider_id``: every part's id of a thread,
    in order). Each (incident, locale) is one thread whose root is the first part of its
    first row, as the sender threads them."""
    now = now or utcnow()
    rows = session.execute(
        select(col(Delivery.id), col(Delivery.message_id), col(Delivery.incident_id),
               col(Delivery.locale), col(Delivery.provider_id), col(Incident.status),
               col(Incident.resolved_at))
        .join(Incident, col(Incident.id) == col(Delivery.incident_id))
        .where(col(Delivery.channel) == channel, col(Delivery.provider_id).is_not(None))
        .order_by(col(Delivery.id))).all()
    threads = Threads()
    roots: dict[tuple[int, str], str] = {}
    cutoff = now - listen_after_resolved
    for delivery_id, message_id, incident_id, locale, provider_id, status, resolved_at in rows:
        ids = PartProgress.parse(provider_id).ids
        if not ids:
            continue
        group = (int(incident_id), str(locale))
        if group not in roots:
            roots[group] = ids[0]
            if status not in CLOSED or (resolved_at is not None
                                        and _aware(resolved_at) >= cutoff):
                threads.listening_roots.append(ids[0])
        for post_id in ids:
            post = OurPost(post_id, int(delivery_id), int(message_id), int(incident_id),
                           str(locale), roots[group])
            threads.by_post[post_id] = post
            threads.by_root.setdefault(post.root, []).append(post)
    return threads


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: int
    ref: str


def open_incidents(session: Session) -> list[OpenIncident]:
    rows = session.execute(select(col(Incident.id), col(Incident.ref))
                           .where(col(Incident.status).not_in(list(CLOSED)))).all()
    return [OpenIncident(int(i), str(r)) for i, r in rows]


def mentioned_incident(text: str, incidents: Sequence[OpenIncident]) -> int | None:
    """The open incident whose reference ``text`` names (the longest, when several match);
    else the only open incident; else None."""
    folded = text.casefold()
    named = [i for i in incidents
             if re.search(rf"(?<![\w-]){re.escape(i.ref.casefold())}(?![\w-])", folded)]
    if named:
        return max(named, key=lambda i: len(i.ref)).id
    return incidents[0].id if len(incidents) == 1 else None


# -- posts into reactions ---------------------------------------------------------------------


def reaction_of(post: Mapping[str, Any], users: Mapping[str, XUser], threads: Threads,
                incidents: Sequence[OpenIncident], *,
                channel: str = LEDGER_CHANNEL) -> ReactionIn:
    """What one post of X's API is, as a reaction: source, author, text as typed (X escapes
    ``&<>``), and what it answers."""
    post_id = str(post["id"])
    text = html.unescape(str(post.get("text") or ""))
    author_id = str(post.get("author_id") or "")
    user = users.get(author_id)
    author = f"@{user.username}" if user is not None and user.username else f"x:{author_id}"
    lang = str(post.get("lang") or "")
    common: dict[str, Any] = {
        "source_id": post_id, "author": author[:320],
        "author_name": user.name[:200] if user is not None and user.name else None,
        "text": text, "channel": channel,
        "language": None if not lang or lang in _UNDETERMINED else lang[:16],
        "received_at": _created_at(post.get("created_at")),
    }
    ours = threads.answered(_replied_to(post), _opt(post.get("conversation_id")), post_id)
    if ours is not None:
        return ReactionIn(source=ReactionSource.x_reply, incident_id=ours.incident_id,
                           message_id=ours.message_id, delivery_id=ours.delivery_id,
                           locale=ours.locale, **common)
    return ReactionIn(source=ReactionSource.x_mention,
                       incident_id=mentioned_incident(text, incidents), **common)


def _replied_to(post: Mapping[str, Any]) -> str | None:
    for ref in post.get("referenced_tweets") or []:
        if isinstance(ref, Mapping) and ref.get("type") == "replied_to" and ref.get("id"):
            return str(ref["id"])
    return None


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _created_at(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


# -- reading one timeline from its cursor ------------------------------------------------------


Fetch = Callable[[str | None, str | None, str | None], Page]
"""(since_id, until_id, page token) -> one page, newest first."""


@dataclass
class _Read:
    posts: list[Mapping[str, Any]]
    users: dict[str, XUser]
    cursor: TimelineCursor
    pages: int
    stopped: Exception | None = None
    """Why reading stopped before the end (a rate limit, an error), after some pages."""


def read_timeline(fetch: Fetch, cursor: TimelineCursor, *, max_pages: int) -> _Read:
    """Read newest-first pages from ``cursor``, at most ``max_pages``; returns the posts and the
    cursor to store. Raises the first page's ``RateLimited``/``XReadError`` (nothing read)."""
    since, until, newest = cursor.since_id, cursor.until_id, cursor.newest_id
    read = _Read([], {}, cursor, 0)
    oldest: str | None = None
    token: str | None = None
    while True:
        try:
            page = fetch(since, until, token)
        except (RateLimited, XReadError) as exc:
            if read.pages == 0:
                raise
            read.stopped = exc
            read.cursor = TimelineCursor(since, oldest or until, newest)
            return read
        read.pages += 1
        read.posts.extend(page.posts)
        read.users.update(page.users)
        newest = newest or page.newest_id
        oldest = page.oldest_id or oldest
        if not page.next_token:
            read.cursor = TimelineCursor(newest or since)
            return read
        if read.pages >= max_pages:
            read.cursor = TimelineCursor(since, oldest or until, newest)
            return read
        token = page.next_token


# -- one poll ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollResult:
    """What one poll did, and when the next one is worth running."""

    read: int
    """Distinct posts read (ours excluded; a post found by two queries counts once)."""
    stored: int
    """New reactions (the rest were stored before)."""
    linked: int
    """New reactions linked to a message of ours."""
    queries: int
    """Queries asked (the mentions timeline, each conversation)."""
    pages: int
    next_poll_at: datetime
    rate_limited: dict[str, datetime] = field(default_factory=dict)
    """Endpoints whose budget is spent, and until when."""
    backlog: bool = False
    """Some query has more to read (page cap or a rate limit): the cursor holds the place."""
    errors: tuple[str, ...] = ()

    @property
    def wait_s(self) -> float:
        return max(0.0, (self.next_poll_at - utcnow()).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "stored": self.stored, "linked": self.linked,
                "queries": self.queries, "pages": self.pages,
                "next_poll_at": self.next_poll_at.isoformat(timespec="seconds"),
                "rate_limited": {k: v.isoformat(timespec="seconds")
                                 for k, v in self.rate_limited.items()},
                "backlog": self.backlog, "errors": list(self.errors)}


def poll_once(session: Session, client: XReader, settings: Settings, *,
              triager: Triager | None = None, page_size: int = 100,
              channel: str = LEDGER_CHANNEL) -> PollResult:
    """Read our mentions and the conversations of our posts from their stored cursors, store
    the new posts as reactions (triaged, linked) and the cursors, committing per query.

    Never waits: an endpoint whose rate budget is spent is skipped until its reset, and the
    result says when polling is useful again. ``XReadError`` (X unreachable, 5xx, refused
    credentials) ends the poll; it is listed in ``errors``, and what was stored stays."""
    triager = triager or Triager()
    started = _epoch_now(client)
    tally = _Tally()
    _load_resets(session, client)
    try:
        me = client.me()
    except (RateLimited, XReadError) as exc:
        tally.fail(exc)
        return _finish(session, tally, settings, started, client)
    threads = load_threads(session, channel=channel, listen_after_resolved=timedelta(
        hours=settings.x_listen_after_resolved_h))
    incidents = open_incidents(session)

    def mentions(since: str | None, until: str | None, token: str | None) -> Page:
        return client.mentions(me.id, since_id=since, until_id=until, token=token,
                               max_results=max(5, min(100, page_size)))

    def conversation(root: str) -> Fetch:
        def fetch(since: str | None, until: str | None, token: str | None) -> Page:
            return client.search(f"conversation_id:{root}", since_id=since, until_id=until,
                                 token=token, max_results=max(10, min(100, page_size)))
        return fetch

    stored_cursors = load_cursors(session, CURSOR_SOURCE)
    never = datetime.min.replace(tzinfo=UTC)
    # the conversations read longest ago first: a search budget too small for all of them
    # serves each in turn instead of starving the last
    roots = sorted(threads.listening_roots, key=lambda root: _aware(
        stored_cursors.get(f"conversation:{root}", ("", never))[1]))
    queries: list[tuple[str, str, Fetch]] = [(f"mentions:{me.id}", MENTIONS, mentions)]
    queries += [(f"conversation:{root}", SEARCH, conversation(root)) for root in roots]
    for key, endpoint, fetch in queries:
        if client.gate.blocked_until(endpoint) is not None:
            tally.backlog = True
            continue
        cursor = TimelineCursor.loads(stored_cursors.get(key, (None, never))[0])
        tally.queries += 1
        try:
            read = read_timeline(fetch, cursor, max_pages=settings.x_poll_max_pages)
        except RateLimited:
            tally.backlog = True
            continue
        except XReadError as exc:
            tally.fail(exc)
            break
        tally.pages += read.pages
        items = [reaction_of(p, read.users, threads, incidents, channel=channel)
                 for p in read.posts if str(p.get("author_id") or "") != me.id]
        tally.seen.update(i.source_id for i in items)
        stored = store_reactions(session, items, triager=triager)
        tally.stored += stored.stored
        tally.linked += stored.linked
        save_cursor(session, CURSOR_SOURCE, key, read.cursor.dumps())
        session.commit()
        if read.cursor.catching_up:
            tally.backlog = True
        if isinstance(read.stopped, XReadError):
            tally.fail(read.stopped)
            break
    return _finish(session, tally, settings, started, client)


def _epoch_now(client: XReader) -> float:
    return client.gate.clock()


def _load_resets(session: Session, client: XReader) -> None:
    for endpoint in ENDPOINTS:
        value = load_cursor(session, RATE_SOURCE, endpoint)
        try:
            until = float(value) if value else None
        except ValueError:
            until = None
        if until is not None:
            client.gate.close(endpoint, until)


def _finish(session: Session, tally: _Tally, settings: Settings, started: float,
            client: XReader) -> PollResult:
    """Store the endpoints' resets (for the next process), commit, and tell the result."""
    for endpoint in ENDPOINTS:
        until = client.gate.blocked_until(endpoint)
        stored = load_cursor(session, RATE_SOURCE, endpoint)
        if until is not None:
            save_cursor(session, RATE_SOURCE, endpoint, f"{until:.3f}")
        elif stored is not None and stored != "0":
            save_cursor(session, RATE_SOURCE, endpoint, "0")
    session.commit()
    return tally.result(settings, started, client)


@dataclass
class _Tally:
    seen: set[str] = field(default_factory=set)
    stored: int = 0
    linked: int = 0
    queries: int = 0
    pages: int = 0
    backlog: bool = False
    errors: list[str] = field(default_factory=list)

    def fail(self, exc: Exception) -> None:
        if isinstance(exc, RateLimited):
            self.backlog = True
        else:
            self.errors.append(str(exc))

    def result(self, settings: Settings, started: float, client: XReader) -> PollResult:
        blocked = {e: until for e in ENDPOINTS
                   if (until := client.gate.blocked_until(e)) is not None}
        next_at = started + settings.x_poll_interval_s
        if blocked and (MENTIONS in blocked or ME in blocked):
            # the mentions timeline is the one query every poll needs: no sooner than its reset
            next_at = max(next_at, min(blocked.values()))
        return PollResult(
            read=len(self.seen), stored=self.stored, linked=self.linked, queries=self.queries,
            pages=self.pages, next_poll_at=datetime.fromtimestamp(next_at, UTC),
            rate_limited={e: datetime.fromtimestamp(t, UTC) for e, t in blocked.items()},
            backlog=self.backlog, errors=tuple(self.errors))


# -- the loop beside the HTTP app, and for the Prefect flow --------------------------------------


def run_x_poller(engine: Engine, settings: Settings, *, stop: threading.Event,
                 triager: Triager | None = None, reader: XReader | None = None,
                 on_result: Callable[[PollResult], None] | None = None) -> None:
    """Poll X until ``stop`` is set: one :func:`poll_once` per ``settings.x_poll_interval_s``
    (later when X's rate limit says so, at least a second apart). Meant for a daemon thread
    beside ``crisiscomms listen``'s HTTP app; returns at once when X is not configured.
    A failing poll (database down, a bug) is logged and retried at the next interval: the
    poller never dies and never spins. The reader (given, or made from the settings) is closed
    when the loop ends."""
    reader = reader or XReader.from_settings(settings)
    if reader is None:
        log.info("X is not configured: no X mentions are polled")
        return
    try:
        while not stop.is_set():
            wait = settings.x_poll_interval_s
            try:
                with Session(engine, expire_on_commit=False) as session:
                    result = poll_once(session, reader, settings, triager=triager)
                wait = result.wait_s
                for error in result.errors:
                    log.warning("X poll: %s", error)
                if on_result is not None:
                    on_result(result)
            except Exception as exc:  # the loop must outlive one bad poll
                log.error("X poll failed: %s: %s", type(exc).__name__, exc)
            stop.wait(max(1.0, wait))
    finally:
        reader.close()
