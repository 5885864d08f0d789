"""A drill's reacting crowd, played through the real receivers (``crisiscomms drill
--reactions N``).

After a drill publishes, :func:`play_crowd` starts the listening app (the same FastAPI app as
``crisiscomms listen``, on a free loopback port), draws a :class:`~.crowd.Crowd` from what the
incident published, and lets it react through every real path:

- X replies and mentions are posted to the X emulator and read back by the X poller
  (``poll_once``, cursors and rate limits as in production);
- email replies are posted as SendGrid Inbound Parse forms (basic auth), tickets as signed
  Zendesk and Freshdesk webhooks, provider events as ECDSA-signed Event Webhook batches (signed
  with the SendGrid emulator's key), CSAT ratings as the rating page's form posts.

Then the watcher runs once (spikes, alerts, automatic replies), and :func:`play_crowd` reports
what the database holds: per source, how many were sent and stored, linked to the message they
answer as the crowd meant, flagged for a human, negative; and how triage agreed with the crowd's
labels. Drills fill the receivers' secrets with random values (:func:`drill_listening_env`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from crisiscomms.core.settings import Settings
from crisiscomms.delivery.models import DeliveryEvent
from crisiscomms.reactions.models import Reaction
from crisiscomms.reactions.signatures import (
    OUR_SIGNATURE_HEADER,
    OUR_TIMESTAMP_HEADER,
    ZENDESK_SIGNATURE_HEADER,
    ZENDESK_TIMESTAMP_HEADER,
    hmac_signature,
)
from crisiscomms.reactions.sources import csat
from crisiscomms.reactions.sources.x_client import XReader
from crisiscomms.reactions.sources.x_mentions import poll_once
from crisiscomms.reactions.triage import Triager
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.crowd import (
    CSAT,
    EMAIL_REPLY,
    EVENT,
    TICKET,
    X_MENTION,
    X_REPLY,
    Crowd,
    CrowdItem,
    CrowdMix,
    event_batches,
    published_from_db,
)
from crisiscomms.testing.emulators.pair import EmulatorPair
from crisiscomms.testing.pgcluster import free_port

HTTP_WORKERS = 8
"""Requests in flight while the crowd posts (the receivers group-commit concurrent ones)."""
MAX_POLLS = 200
"""X polls at most, reading the crowd's posts back (each reads up to its page cap)."""


def drill_listening_env(listen_url: str) -> dict[str, str]:
    """The receivers' settings for a drill: random secrets (nothing reaches a person), the
    app's address, a reply domain, and an alert address for spikes (the SendGrid emulator)."""
    return {
        "CRISISCOMMS_LISTEN_URL": listen_url,
        "CRISISCOMMS_INBOUND_PARSE_USER": "sendgrid-parse",
        "CRISISCOMMS_INBOUND_PARSE_PASSWORD": secrets.token_urlsafe(18),
        "CRISISCOMMS_ZENDESK_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "CRISISCOMMS_FRESHDESK_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "CRISISCOMMS_CSAT_SECRET": secrets.token_urlsafe(24),
        "CRISISCOMMS_REPLY_DOMAIN": "replies.drill.example.com",
        "CRISISCOMMS_ALERT_EMAIL_TO": "pr-lead@drill.example.com",
    }


ListenAppFactory = Callable[[Settings, Triager], Any]
"""Makes the listening ASGI app (``crisiscomms.api.listen.create_app``): the face that runs a
drill passes it in, since ``testing`` may not import a face."""


@contextmanager
def listening_app(make_app: ListenAppFactory, settings: Settings, triager: Triager,
                  port: int) -> Iterator[str]:
    """The listening app on 127.0.0.1:``port`` in a thread, until the block ends; its URL."""
    with serve_app(make_app(settings, triager), port, name="drill-listen") as url:
        yield url


@dataclass
class _Poster:
    """Posts crowd items to the listening app as each provider would (signed, authenticated)."""

    base: str
    settings: Settings
    pair: EmulatorPair
    client: httpx.Client

    def post(self, item: CrowdItem) -> int:
        assert item.path is not None and item.payload is not None
        url = self.base + item.path
        if item.source == EMAIL_REPLY:
            user = self.settings.inbound_parse_user or ""
            password = self.settings.inbound_parse_password
            auth = (user, password.get_secret_value() if password else "")
            files = {name: (None, str(value)) for name, value in item.payload.items()}
            return self.client.post(url, files=files, auth=auth).status_code
        if item.source == CSAT:
            return self.client.post(url, data=dict(item.payload)).status_code
        if item.source == TICKET:
            body = json.dumps(item.payload, ensure_ascii=False).encode()
            stamp = str(int(time.time()))
            zendesk = item.path.endswith("zendesk")
            secret = (self.settings.zendesk_webhook_secret if zendesk
                      else self.settings.freshdesk_webhook_secret)
            assert secret is not None
            headers = {"Content-Type": "application/json",
                       (ZENDESK_SIGNATURE_HEADER if zendesk else OUR_SIGNATURE_HEADER):
                           hmac_signature(secret.get_secret_value(), stamp, body),
                       (ZENDESK_TIMESTAMP_HEADER if zendesk else OUR_TIMESTAMP_HEADER): stamp}
            return self.client.post(url, content=body, headers=headers).status_code
        raise ValueError(f"not an HTTP item: {item.source}")

    def post_events(self, batch: Sequence[Mapping[str, Any]]) -> int:
        body = json.dumps(list(batch), separators=(",", ":")).encode() + b"\r\n"
        headers = {"Content-Type": "application/json",
                   **self.pair.sendgrid.signer.headers(body)}
        return self.client.post(self.base + "/v1/sendgrid/events", content=body,
                                headers=headers).status_code


@dataclass
class Played:
    """What a crowd did: its items (with their labels) and the X post id of each X item."""

    items: list[CrowdItem]
    seed: int
    x_posts: dict[int, str]
    """Crowd item ``n`` → the post id the X emulator gave it."""


def play_crowd(engine: Engine, settings: Settings, pair: EmulatorPair, *, incident_id: int,
               count: int, triager: Triager, listen_url: str, seed: int = 0,
               vip: Sequence[str] = (), only: Sequence[str] | None = None,
               skip: Sequence[str] = ()) -> Played:
    """Draw ``count`` reactions to what ``incident_id`` published and send each through its
    real path (see the module docstring). ``only``/``skip``: the sources to play (a drill plays
    CSAT ratings after the resolution, the rest before)."""
    with Session(engine) as session:
        published = published_from_db(session, incident_id, our_address=settings.email_from)
    secret = settings.csat_secret.get_secret_value() if settings.csat_secret else ""
    chosen = {s: w for s, w in CrowdMix().sources.items()
              if (only is None or s in only) and s not in skip}
    crowd = Crowd(published, seed=seed, vip=vip, mix=CrowdMix(sources=chosen),
                  started_at=time.time() - 600,
                  csat_token=lambda rid, mid: csat.make_token(
                      secret, incident_id=incident_id, recipient_id=rid, message_id=mid))
    items = crowd.generate(count)
    # X: the crowd posts on X, the poller reads it back from its cursors
    if any(i.source in (X_REPLY, X_MENTION) for i in items):
        crowd.play_x(items, pair.x)
        reader = XReader.from_settings(settings)
        if reader is not None:
            try:
                for _ in range(MAX_POLLS):
                    with Session(engine, expire_on_commit=False) as session:
                        result = poll_once(session, reader, settings, triager=triager)
                    if not result.backlog or result.errors:
                        break
                    if result.rate_limited:
                        time.sleep(min(result.wait_s, 2.0))
            finally:
                reader.close()
    # the HTTP sources, as each provider posts them
    with httpx.Client(timeout=30) as client:
        poster = _Poster(listen_url, settings, pair, client)
        for batch in event_batches(items, size=500):
            poster.post_events(batch)
        texts = [i for i in items if i.source in (EMAIL_REPLY, TICKET, CSAT)]
        with ThreadPoolExecutor(HTTP_WORKERS) as pool:
            list(pool.map(poster.post, texts))
    return Played(items, seed, dict(crowd.posted))


def _source_key(item: CrowdItem, played: Played) -> tuple[str, str] | None:
    """(source, source id or its prefix) under which the receivers store ``item``."""
    if item.source in (X_REPLY, X_MENTION):
        post = played.x_posts.get(item.n)
        return None if post is None else ("x", post)
    if item.source == EMAIL_REPLY:
        return EMAIL_REPLY, f"<crowd-{played.seed}-{item.n}@mail.example.net>"
    if item.source == TICKET and item.payload is not None:
        ticket = item.payload.get("ticket") or {}
        fresh = item.payload.get("freshdesk_webhook") or {}
        if ticket:
            return TICKET, f"zendesk:{ticket.get('id')}:"
        return TICKET, f"freshdesk:{fresh.get('ticket_id')}:"
    return None


def crowd_report(engine: Engine, incident_id: int, crowds: Sequence[Played]) -> dict[str, Any]:
    """What the database holds of the crowds' reactions, against what each crowd meant."""
    pairs = [(item, played) for played in crowds for item in played.items]
    items = [item for item, _ in pairs]
    with Session(engine) as session:
        rows = session.execute(
            select(col(Reaction.source), col(Reaction.source_id), col(Reaction.message_id),
                   col(Reaction.locale), col(Reaction.sentiment), col(Reaction.needs_human))
            .where(col(Reaction.incident_id) == incident_id)).all()
        events = session.execute(
            select(col(DeliveryEvent.event_key))
            .where(col(DeliveryEvent.incident_id) == incident_id)).scalars().all()
    by_source: dict[str, dict[str, int]] = {}

    def counts(source: str) -> dict[str, int]:
        name = "x" if source in (X_REPLY, X_MENTION) else source  # one row for X's two kinds
        return by_source.setdefault(name, dict.fromkeys(
            ("sent", "stored", "linked", "needs_human", "negative"), 0))

    # what was stored, and (by source id) what triage and linking said of it
    stored: dict[tuple[str, str], tuple[int | None, str | None, str, bool]] = {}
    prefixes: dict[tuple[str, str], tuple[int | None, str | None, str, bool]] = {}
    for source, sid, message_id, locale, sentiment, flagged in rows:
        name = "x" if str(source) in (X_REPLY, X_MENTION) else str(source)
        row = counts(str(source))
        row["stored"] += 1
        row["linked"] += message_id is not None
        row["needs_human"] += bool(flagged)
        row["negative"] += str(sentiment) == "negative"
        value = (message_id, locale, str(sentiment), bool(flagged))
        stored[(name, str(sid))] = value
        if name == TICKET:
            prefixes[(name, str(sid).rsplit(":", 1)[0] + ":")] = value
    for item in items:
        if item.source != EVENT:
            counts(item.source)["sent"] += 1
    # triage against the crowd's labels, and linking against what each item answered
    agree = linked_right = linked_expected = 0
    tp = fp = fn = htp = hfp = hfn = compared = 0
    for item, played in pairs:
        key = _source_key(item, played)
        if key is None or item.label is None:
            continue
        found = stored.get(key) or prefixes.get(key)
        if found is None:
            continue
        compared += 1
        message_id, _locale, sentiment, flagged = found
        if item.expected.message_id is not None:
            linked_expected += 1
            linked_right += message_id == item.expected.message_id
        agree += sentiment == item.label.sentiment
        negative, truly = sentiment == "negative", item.label.sentiment == "negative"
        tp, fp, fn = tp + (negative and truly), fp + (negative and not truly), \
            fn + (truly and not negative)
        htp, hfp, hfn = htp + (flagged and item.label.needs_human), \
            hfp + (flagged and not item.label.needs_human), \
            hfn + (item.label.needs_human and not flagged)
    sent_events = sum(1 for i in items if i.source == EVENT)
    unique_events = len({i.payload.get("sg_event_id") for i in items
                         if i.source == EVENT and i.payload is not None})

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    return {
        "played": len(items),
        "by_source": by_source,
        "events": {"sent": sent_events, "unique": unique_events, "stored": len(events)},
        "linked_as_meant": ratio(linked_right, linked_expected),
        "triage": {"compared": compared, "sentiment_agreement": ratio(agree, compared),
                   "negative_recall": ratio(tp, tp + fn),
                   "negative_precision": ratio(tp, tp + fp),
                   "needs_human_recall": ratio(htp, htp + hfn),
                   "needs_human_precision": ratio(htp, htp + hfp)},
    }


__all__ = ["ListenAppFactory", "Played", "crowd_report", "drill_listening_env", "free_port",
           "listening_app", "play_crowd"]
