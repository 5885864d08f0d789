"""A reacting crowd for drills: after we publish, customers answer, and we know what they meant.

Given what an incident published (:class:`Published`: its X posts and email batches, read from
the ledger by :func:`published_from_db`) and a count, :class:`Crowd` draws a reproducible
(seeded) mix of reactions:

- **per source**, in :class:`CrowdMix` proportions: X replies (some deeper in the thread, to
  another customer's reply, without mentioning us) and mentions, email replies (SendGrid
  Inbound Parse form fields), support tickets (Zendesk- and Freshdesk-shaped JSON), CSAT
  ratings (1-5, a comment or not) and SendGrid Event Webhook events (delivered, open, bounce,
  spam report, unsubscribe..., a few delivered twice as SendGrid retries do);
- **per locale** (en, es, fr, de, ja) in realistic proportions, each reaction answering the
  message of its own locale;
- **per kind**, with texts from ``crowd_texts.yaml``: explicit complaints, the complaints a
  lexicon misses ("still waiting 3 hours", "why is nobody answering?"), questions ("when will
  it be fixed?"), thanks, neutral remarks, and a few safety, legal, press and VIP ones; a few
  carry markup or control characters (stored as sent, shown escaped).

Every item has its **label** (:class:`Label`: sentiment, needs-a-human and why) and what it
should be **linked** to (:class:`Expected`), so a drill can report how triage and linking did.

The crowd drives X itself (:meth:`Crowd.play_x` adds the posts to the X emulator: replies to
our posts, or to earlier crowd posts); for the HTTP sources each item carries the ``path`` of
the listening app (``crisiscomms listen``) and its ``payload`` (JSON body or form fields), which
the drill posts (and signs) itself; :func:`event_batches` groups events into the arrays SendGrid
posts. 5,000 reactions are drawn in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import select
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.channels.x_social import XChannel
from crisiscomms.delivery.contract import PartProgress
from crisiscomms.delivery.ledger import decode_ids
from crisiscomms.delivery.models import Delivery
from crisiscomms.incident.models import Incident, Message
from crisiscomms.testing.emulators.x_api import XEmulator

TEXTS_FILE = Path(__file__).with_name("crowd_texts.yaml")
X_REPLY, X_MENTION, EMAIL_REPLY, TICKET, CSAT, EVENT = (
    "x_reply", "x_mention", "email_reply", "ticket", "csat", "event")
SOURCES = (X_REPLY, X_MENTION, EMAIL_REPLY, TICKET, CSAT, EVENT)
"""Item sources; all but ``event`` are ``ReactionSource`` values."""
PATHS = {EMAIL_REPLY: "/v1/sendgrid/inbound", EVENT: "/v1/sendgrid/events",
         "zendesk": "/v1/tickets/zendesk", "freshdesk": "/v1/tickets/freshdesk"}
"""The listening app's paths (the shared contract); CSAT is ``/v1/csat/{token}``."""
NEEDS_HUMAN_KINDS = frozenset({"complaint", "complaint_implicit", "safety", "legal", "press"})
_MARKUP = ("<b>{text}</b>", "{text} <script>alert(1)</script>", "{text}\u0007", "\u202e{text}",
           "{text} &amp; more")
"""A few texts as people (and scripts) really send them: markup, a control character, a
right-to-left override. They must be stored as sent and shown escaped."""
_NAMES = {"en": ("alex", "sam", "jordan", "taylor", "casey", "morgan"),
          "es": ("lucia", "mateo", "sofia", "diego", "carmen"),
          "fr": ("camille", "louis", "chloe", "hugo", "manon"),
          "de": ("lena", "jonas", "mia", "felix", "hannah"),
          "ja": ("haruto", "yui", "sota", "aoi", "ren")}
_BOUNCE = "550 5.1.1 The email account that you tried to reach does not exist."


# -- what was published -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostTarget:
    """One of our X posts (the first post of a message's thread)."""

    post_id: str
    message_id: int
    delivery_id: int
    locale: str


@dataclass(frozen=True, slots=True)
class BatchTarget:
    """One email batch (ledger row) and some of its recipients (id, address, name)."""

    delivery_id: int
    message_id: int
    key: str
    provider_id: str | None
    locale: str
    subject: str
    recipients: tuple[tuple[int, str, str | None], ...]


@dataclass(frozen=True)
class Published:
    """What an incident published, as the crowd needs it."""

    incident_id: int
    incident_ref: str
    posts: tuple[PostTarget, ...] = ()
    batches: tuple[BatchTarget, ...] = ()
    our_address: str = "status@example.com"
    """Where replies to our emails go (the ``to`` of an Inbound Parse post)."""


def published_from_db(session: Session, incident_id: int, *, our_address: str,
                      recipients_per_batch: int = 200) -> Published:
    """Read an incident's sent X posts and email batches from the ledger (at most
    ``recipients_per_batch`` recipients of each batch: enough authors, little memory)."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise ValueError(f"no incident {incident_id}")
    rows = session.execute(
        select(col(Delivery.id), col(Delivery.message_id), col(Delivery.channel),
               col(Delivery.locale), col(Delivery.key), col(Delivery.provider_id),
               col(Delivery.recipient_ids))
        .where(col(Delivery.incident_id) == incident_id,
               col(Delivery.provider_id).is_not(None))
        .order_by(col(Delivery.id))).all()
    subjects = {int(mid): str(json.loads(parts).get("subject") or "")
                for mid, parts in session.execute(
                    select(col(Message.id), col(Message.parts_json))
                    .where(col(Message.incident_id) == incident_id)).all()}
    posts: list[PostTarget] = []
    wanted: dict[int, list[int]] = {}
    for did, mid, channel, locale, _key, provider_id, ids in rows:
        if channel == XChannel.name:
            parts = PartProgress.parse(provider_id).ids
            if parts:
                posts.append(PostTarget(parts[0], int(mid), int(did), str(locale)))
        elif channel == SendGridEmailChannel.name:
            wanted[int(did)] = decode_ids(str(ids))[:recipients_per_batch]
    everyone = sorted({rid for ids in wanted.values() for rid in ids})
    people: dict[int, tuple[str, str | None]] = {}
    for start in range(0, len(everyone), 900):
        chunk = everyone[start:start + 900]
        people.update({int(r): (str(e), n) for r, e, n in session.execute(
            select(col(Recipient.id), col(Recipient.email), col(Recipient.name))
            .where(col(Recipient.id).in_(chunk))).all()})
    batches = tuple(
        BatchTarget(int(did), int(mid), str(key), None if pid is None else str(pid), str(locale),
                    subjects.get(int(mid), ""),
                    tuple((rid, *people[rid]) for rid in wanted[int(did)] if rid in people))
        for did, mid, channel, locale, key, pid, _ in rows if int(did) in wanted)
    return Published(incident_id, incident.ref, tuple(posts),
                     tuple(b for b in batches if b.recipients), our_address)


# -- the mix and the labels ---------------------------------------------------------------------


@dataclass(frozen=True)
class CrowdMix:
    """Proportions of the crowd (each mapping is normalised; a source with nothing to answer,
    such as email without email batches, is left out and the others scaled up)."""

    sources: Mapping[str, float] = field(default_factory=lambda: {
        X_REPLY: 0.25, X_MENTION: 0.12, EMAIL_REPLY: 0.20, TICKET: 0.13, CSAT: 0.10,
        EVENT: 0.20})
    locales: Mapping[str, float] = field(default_factory=lambda: {
        "en": 0.50, "es": 0.17, "fr": 0.11, "de": 0.12, "ja": 0.10})
    kinds: Mapping[str, float] = field(default_factory=lambda: {
        "complaint": 0.13, "complaint_implicit": 0.20, "question": 0.22, "thanks": 0.14,
        "neutral": 0.13, "safety": 0.04, "legal": 0.05, "press": 0.04})
    events: Mapping[str, float] = field(default_factory=lambda: {
        "delivered": 0.45, "open": 0.28, "click": 0.08, "bounce": 0.05, "dropped": 0.02,
        "deferred": 0.03, "spamreport": 0.03, "unsubscribe": 0.06})
    vip_share: float = 0.03
    """Of the texts, written by a VIP (when the playbook names VIPs)."""
    deep_reply_share: float = 0.2
    """Of the X replies, answering another customer's reply in our thread (no mention of us)."""
    repeat_author_share: float = 0.1
    """Of the texts, by an author who already wrote (the once-per-author rule of replies)."""
    markup_share: float = 0.01
    event_redelivery_share: float = 0.02
    """Of the events, an earlier event delivered again (same ``sg_event_id``)."""
    names_ref_share: float = 0.3
    """Of the X mentions, naming the incident's reference."""


@dataclass(frozen=True, slots=True)
class Label:
    """What a careful person would say the reaction is."""

    kind: str
    sentiment: str
    """``negative``, ``neutral`` or ``positive``."""
    needs_human: bool
    reasons: tuple[str, ...] = ()
    """``complaint``, ``safety``, ``legal``, ``press``, ``vip``: why a person must see it."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What the reaction should be linked to once stored."""

    incident_id: int | None
    message_id: int | None = None
    delivery_id: int | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class CrowdItem:
    """One reaction of the crowd (or one provider event)."""

    n: int
    source: str
    locale: str
    author: str
    """``@handle`` on X, else an email address."""
    text: str
    label: Label | None
    """None for provider events (they are not triaged)."""
    expected: Expected
    at_s: float
    """Seconds after publication (non-decreasing in ``n``)."""
    path: str | None = None
    """Where the listening app receives it; None for X (:meth:`Crowd.play_x` posts it)."""
    payload: Mapping[str, Any] | None = None
    """The JSON body (tickets, one event), or the form fields (Inbound Parse, CSAT)."""
    content_type: str | None = None
    rating: int | None = None
    reply_to_item: int | None = None
    """X only: the earlier crowd item this answers (a reply deeper in our thread)."""
    repeat_of: int | None = None
    """Events only: the earlier item this is a redelivery of (stored once)."""
    recipient_id: int | None = None


@lru_cache(maxsize=1)
def _texts() -> tuple[dict[str, Label], dict[str, dict[str, tuple[str, ...]]]]:
    data = yaml.safe_load(TEXTS_FILE.read_text(encoding="utf-8"))
    labels = {kind: Label(kind, str(v["sentiment"]), bool(v["needs_human"]),
                          (str(v["reason"]),) if v.get("reason") else ())
              for kind, v in data["labels"].items()}
    texts = {locale: {kind: tuple(map(str, items)) for kind, items in kinds.items()}
             for locale, kinds in data["texts"].items()}
    return labels, texts


def _cum(weights: Mapping[str, float], allowed: Iterable[str] | None = None
         ) -> tuple[list[str], list[float]]:
    names = [k for k, w in weights.items() if w > 0 and (allowed is None or k in allowed)]
    if not names:
        raise ValueError("nothing to draw from: every weight is zero or unavailable")
    return names, list(accumulate(weights[k] for k in names))


class Crowd:
    """Draws a reproducible reacting crowd for one published incident."""

    def __init__(self, published: Published, *, seed: int = 0, mix: CrowdMix | None = None,
                 vip: Sequence[str] = (),
                 csat_token: Callable[[int, int], str] | None = None,
                 started_at: float = 1_700_000_000.0) -> None:
        """``vip``: the playbook's VIP authors (handles starting ``@``, addresses);
        ``csat_token(recipient_id, message_id)``: the CSAT link's token (the receivers' own
        function), without it CSAT paths carry ``{token}`` for the drill to fill;
        ``started_at``: epoch seconds of publication (events' and tickets' times; a constant by
        default so that a seed gives the same payloads)."""
        self.started_at = started_at
        self.published = published
        self.seed = seed
        self.mix = mix or CrowdMix()
        self.vip_handles = tuple(v for v in vip if v.startswith("@") and "." not in v)
        self.vip_addresses = tuple(v for v in vip if "@" in v and not v.startswith("@"))
        self.csat_token = csat_token
        self.posted: dict[int, str] = {}
        """X items posted by :meth:`play_x` (``n`` -> post id)."""
        labels, texts = _texts()
        self._labels = labels
        self._texts = texts
        available = set(SOURCES)
        if not published.posts:
            available.discard(X_REPLY)
        if not published.batches:
            available -= {EMAIL_REPLY, CSAT, EVENT, TICKET}
        self._sources = _cum(self.mix.sources, available)
        self._locales = _cum(self.mix.locales, texts)
        self._kinds = _cum(self.mix.kinds, labels)
        self._events = _cum(self.mix.events)
        self._posts_by_locale = _group(published.posts, lambda p: p.locale)
        self._latest_post = {locale: max(posts, key=lambda p: int(p.post_id))
                             for locale, posts in self._posts_by_locale.items()}
        self._batches_by_locale = _group(published.batches, lambda b: b.locale)

    # ---- drawing --------------------------------------------------------------------------

    def generate(self, count: int) -> list[CrowdItem]:
        """``count`` items, the same for the same seed, published and mix."""
        if count < 0:
            raise ValueError("count must not be negative")
        rng = random.Random(self.seed)
        state = _State()
        at = 0.0
        for n in range(count):
            at += rng.expovariate(1.0) * (0.2 + 3.0 * n / max(1, count))
            source = _draw(rng, self._sources)
            locale = _draw(rng, self._locales)
            if source == EVENT:
                item = self._event(rng, n, locale, at, state)
                state.events.append(n)
            else:
                item = self._text_item(rng, n, source, locale, at, state)
                if item.source == X_REPLY:
                    state.x_replies.append(n)
                if item.author.startswith("@"):
                    handles = state.handles.setdefault(item.locale, [])
                    handles.append(item.author)
                    if len(handles) > 400:
                        del handles[:200]
            state.items.append(item)
        return state.items

    def _text_item(self, rng: random.Random, n: int, source: str, locale: str, at: float,
                   state: _State) -> CrowdItem:
        kind = _draw(rng, self._kinds)
        label = self._labels[kind]
        text = self._text(rng, locale, kind)
        vip = rng.random() < self.mix.vip_share
        if rng.random() < self.mix.markup_share:
            text = rng.choice(_MARKUP).format(text=text)
        incident = self.published.incident_id
        if source in (X_REPLY, X_MENTION):
            author = self._x_author(rng, locale, state, vip)
            vip = author in self.vip_handles
            if source == X_MENTION:
                if rng.random() < self.mix.names_ref_share:
                    text = f"{text} {self.published.incident_ref}"
                return CrowdItem(n, X_MENTION, locale, author, text, _with_vip(label, vip),
                                 Expected(incident), at)
            if state.x_replies and rng.random() < self.mix.deep_reply_share:
                # deeper in our thread: listening links it to our latest post there
                parent = state.items[rng.choice(state.x_replies[-50:])]
                latest = self._latest_post[parent.locale]
                return CrowdItem(n, X_REPLY, parent.locale, author, text, _with_vip(label, vip),
                                 Expected(incident, latest.message_id, latest.delivery_id,
                                          latest.locale), at, reply_to_item=parent.n)
            post = self._post(rng, locale)
            return CrowdItem(n, X_REPLY, post.locale, author, text, _with_vip(label, vip),
                             Expected(incident, post.message_id, post.delivery_id, post.locale),
                             at)
        batch = self._batch(rng, locale)
        rid, address, name = rng.choice(batch.recipients)
        if vip and self.vip_addresses:
            address, name = rng.choice(self.vip_addresses), None
        vip = vip and bool(self.vip_addresses)
        expected = Expected(incident, batch.message_id, batch.delivery_id, batch.locale)
        if source == EMAIL_REPLY:
            return CrowdItem(n, EMAIL_REPLY, batch.locale, address, text, _with_vip(label, vip),
                             expected, at, PATHS[EMAIL_REPLY],
                             self._inbound(n, batch, rid, address, name, text),
                             "multipart/form-data", recipient_id=rid)
        if source == CSAT:
            rating = _rating(rng, label)
            comment = text if rng.random() < 0.6 else ""
            token = self.csat_token(rid, batch.message_id) if self.csat_token else "{token}"
            return CrowdItem(n, CSAT, batch.locale, address, comment, _with_vip(label, vip),
                             expected, at, f"/v1/csat/{token}",
                             {"rating": str(rating), "comment": comment},
                             "application/x-www-form-urlencoded", rating=rating,
                             recipient_id=rid)
        desk = "zendesk" if rng.random() < 0.7 else "freshdesk"
        return CrowdItem(n, TICKET, batch.locale, address, text, _with_vip(label, vip),
                         Expected(incident, locale=batch.locale), at, PATHS[desk],
                         self._ticket(desk, n, batch.locale, address, name, text, at),
                         "application/json", recipient_id=rid)

    def _text(self, rng: random.Random, locale: str, kind: str) -> str:
        choices = self._texts.get(locale, {}).get(kind) or self._texts["en"][kind]
        return rng.choice(choices).format(
            hours=rng.randint(2, 9), minutes=rng.choice((20, 35, 40, 45, 55, 90)),
            days=rng.randint(3, 12), ref=self.published.incident_ref)

    def _x_author(self, rng: random.Random, locale: str, state: _State, vip: bool) -> str:
        if vip and self.vip_handles:
            return rng.choice(self.vip_handles)
        earlier = state.handles.get(locale)
        if earlier and rng.random() < self.mix.repeat_author_share:
            return rng.choice(earlier)
        return f"@{rng.choice(_NAMES.get(locale, _NAMES['en']))}{rng.randrange(100_000)}"

    def _post(self, rng: random.Random, locale: str) -> PostTarget:
        return rng.choice(self._posts_by_locale.get(locale) or self.published.posts)

    def _batch(self, rng: random.Random, locale: str) -> BatchTarget:
        return rng.choice(self._batches_by_locale.get(locale) or self.published.batches)

    def _inbound(self, n: int, batch: BatchTarget, rid: int, address: str, name: str | None,
                 text: str) -> dict[str, str]:
        """SendGrid Inbound Parse's form fields (not raw MIME): the reply's headers name our
        message (``In-Reply-To``/``References``: the batch's SendGrid message id and the
        recipient), as a mail client's reply does."""
        ours = f"<{batch.provider_id or batch.key}.{rid}@ismtpd.sendgrid.net>"
        sender = f"{name} <{address}>" if name else address
        subject = f"Re: {batch.subject}" if batch.subject else "Re:"
        headers = "\n".join((
            f"Message-ID: <crowd-{self.seed}-{n}@mail.example.net>", f"In-Reply-To: {ours}",
            f"References: {ours}", f"From: {sender}", f"To: {self.published.our_address}",
            f"Subject: {subject}", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=UTF-8"))
        return {"headers": headers, "from": sender, "to": self.published.our_address,
                "subject": subject, "text": text,
                "envelope": json.dumps({"to": [self.published.our_address], "from": address}),
                "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8",
                                        "text": "UTF-8"}),
                "SPF": "pass", "sender_ip": "203.0.113.25", "spam_score": "0.1"}

    def _ticket(self, desk: str, n: int, locale: str, address: str, name: str | None,
                text: str, at: float) -> dict[str, Any]:
        ticket_id = 100_000 + self.seed * 10_000 + n
        subject = text if len(text) <= 60 else text[:57] + "..."
        if desk == "zendesk":
            return {"ticket": {"id": ticket_id, "subject": subject, "description": text,
                               "requester": {"email": address, "name": name or address},
                               "locale": locale, "created_at": self._iso(at),
                               "tags": ["incident", self.published.incident_ref.lower()],
                               "via": {"channel": "web"}}}
        return {"freshdesk_webhook": {"ticket_id": ticket_id, "ticket_subject": subject,
                                      "ticket_description": text,
                                      "ticket_contact_email": address,
                                      "ticket_contact_name": name or address,
                                      "ticket_created_at": self._iso(at),
                                      "ticket_tags": self.published.incident_ref}}

    def _event(self, rng: random.Random, n: int, locale: str, at: float,
               state: _State) -> CrowdItem:
        if state.events and rng.random() < self.mix.event_redelivery_share:
            first = state.items[rng.choice(state.events)]
            return CrowdItem(n, EVENT, first.locale, first.author, "", None, first.expected,
                             at, PATHS[EVENT], first.payload, "application/json",
                             repeat_of=first.repeat_of if first.repeat_of is not None
                             else first.n, recipient_id=first.recipient_id)
        batch = self._batch(rng, locale)
        rid, address, _name = rng.choice(batch.recipients)
        kind = _draw(rng, self._events)
        event: dict[str, Any] = {
            "email": address, "timestamp": int(self.started_at + at), "event": kind,
            "sg_event_id": f"crowd-{self.seed}-{n}",
            "sg_message_id": f"{batch.provider_id or batch.key}.filter0001-{rid}",
            "crisiscomms_key": batch.key, "crisiscomms_recipient": str(rid),
        }
        if kind == "bounce":
            event.update(type="bounce", reason=_BOUNCE, status="5.1.1")
        elif kind == "dropped":
            event["reason"] = "Bounced Address"
        elif kind == "deferred":
            event.update(response="421 4.7.0 try again later", attempt="1")
        elif kind == "click":
            event["url"] = "https://status.example.com/"
        if kind in ("open", "click"):
            event.update(useragent="Mozilla/5.0", ip="198.51.100.7")
        return CrowdItem(n, EVENT, batch.locale, address, "", None,
                         Expected(self.published.incident_id, batch.message_id,
                                  batch.delivery_id, batch.locale),
                         at, PATHS[EVENT], event, "application/json", recipient_id=rid)

    def _iso(self, at: float) -> str:
        return datetime.fromtimestamp(self.started_at + at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # ---- X --------------------------------------------------------------------------------

    def play_x(self, items: Sequence[CrowdItem], emulator: XEmulator, *,
               window: tuple[float, float] | None = None) -> dict[int, str]:
        """Post the X items to the emulator, in order: replies to our post of their locale
        (or to the earlier crowd post they answer, without mentioning us), mentions with our
        handle. ``window`` (start, end) in ``at_s`` seconds posts only the items of that
        slice, so a drill can let the crowd arrive over time (a spike); the crowd remembers
        what it posted, so a later slice's replies find their parents. Returns the post id
        of each item posted now (``n`` -> id); :attr:`posted` holds them all."""
        ids: dict[int, str] = {}
        posts = {p.delivery_id: p for p in self.published.posts}
        for item in items:
            if item.source not in (X_REPLY, X_MENTION) or item.n in self.posted:
                continue
            if window is not None and not window[0] <= item.at_s < window[1]:
                continue
            username = item.author.removeprefix("@")
            parent = None if item.reply_to_item is None else self.posted.get(item.reply_to_item)
            if item.source == X_MENTION:
                post = emulator.add_post(item.text, username=username, mention=True,
                                         lang=item.locale)
            elif parent is not None:
                post = emulator.add_post(item.text, username=username, mention=False,
                                         reply_to=parent, lang=item.locale)
            else:  # answering our post (or its parent was never posted: answer ours)
                target = posts[item.expected.delivery_id or 0]
                post = emulator.add_post(item.text, username=username,
                                         reply_to=target.post_id, lang=item.locale)
            ids[item.n] = self.posted[item.n] = str(post["id"])
        return ids


def event_batches(items: Iterable[CrowdItem], size: int = 500) -> Iterator[list[dict[str, Any]]]:
    """The event items' payloads as the JSON arrays SendGrid posts (``size`` events each)."""
    batch: list[dict[str, Any]] = []
    for item in items:
        if item.source == EVENT and item.payload is not None:
            batch.append(dict(item.payload))
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def label_counts(items: Iterable[CrowdItem]) -> dict[str, dict[str, int]]:
    """Per source: items, negative, needs a human (the drill's truth to compare with)."""
    out: dict[str, dict[str, int]] = {}
    for item in items:
        row = out.setdefault(item.source, {"items": 0, "negative": 0, "needs_human": 0})
        row["items"] += 1
        if item.label is not None:
            row["negative"] += item.label.sentiment == "negative"
            row["needs_human"] += item.label.needs_human
    return out


@dataclass
class _State:
    """What a draw remembers: the items so far, and which are X replies, events, handles."""

    items: list[CrowdItem] = field(default_factory=list)
    x_replies: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    handles: dict[str, list[str]] = field(default_factory=dict)


def _draw(rng: random.Random, table: tuple[list[str], list[float]]) -> str:
    names, cum = table
    return names[min(len(names) - 1, bisect_right(cum, rng.random() * cum[-1]))]


T = TypeVar("T")


def _group(values: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = {}
    for value in values:
        out.setdefault(key(value), []).append(value)
    return out


def _with_vip(label: Label, vip: bool) -> Label:
    if not vip:
        return label
    return Label(label.kind, label.sentiment, True, (*label.reasons, "vip"))


def _rating(rng: random.Random, label: Label) -> int:
    if label.sentiment == "negative":
        return rng.choice((1, 1, 2))
    if label.sentiment == "positive":
        return rng.choice((4, 5, 5))
    return rng.choice((3, 3, 4))


