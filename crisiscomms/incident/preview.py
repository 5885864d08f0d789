"""A stage's whole bundle as its recipients will see it, for the person about to approve it.

What is shown is the **stored** bundle (``Message.parts_json``, the very text the approval's
hash covers), never a fresh render: a preview rendered again could differ from what is sent
(templates edited since), and the approver would approve one text and publish another.

- **Personal messages** (email, the press release) are stored with substitution tags
  (``%first_name%``, per-recipient time tags, ``%unsubscribe_url%``). They are filled for a
  sample recipient by the publisher's own function (``delivery.sender.personalize``, with the
  channel's own unsubscribe and rating links when the channel is configured) and the provider's
  own substitution pass (``render.substitutions.apply_substitutions``): a copy of either could
  drift, and the preview would then show words nobody receives.
- **Weighted length**: a channel with ``limits.max_weighted_length`` (X) gets each post of its
  thread counted as X counts it (``render.text_weight``).
- **Diff**: each message against the newest *published* message (a sent delivery) of the same
  incident, channel and locale before this bundle, part by part (``difflib``), so an approver
  reads what changed since the public last heard from us.

No Streamlit here: the approvals page calls :func:`bundle_preview`, and so do the tests.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.database import session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.sender import (
    personal_fields,
    personalize,
    rating_for,
    unsubscribe_for,
)
from crisiscomms.incident.models import Message
from crisiscomms.incident.service import (
    facts_of,
    first_approval,
    get_incident,
    latest_facts,
    load_bundle,
)
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.render.environment import time_tags
from crisiscomms.render.substitutions import apply_substitutions
from crisiscomms.render.text_weight import x_weighted_length

_THREAD_PART = re.compile(r"text(?:_(\d))?")


@dataclass(frozen=True)
class SampleRecipient:
    """The made-up person a personal message is shown for (never a real customer: an approver
    needs to see how the fields fill, not someone's data)."""

    name: str | None = "Alex Morgan"
    """None: a recipient without a name on file (the playbook's fallback shows)."""
    email: str = "alex.morgan@example.com"
    plan: str | None = "Business"
    product: str | None = None
    order_ref: str | None = None
    time_zone: str | None = None
    """None: the playbook's zone for the locale, else the fact sheet's."""
    unsubscribe_token: str = "preview-sample"
    id: int = 0

    def row(self, zone: str) -> tuple[Any, ...]:
        """The recipient as ``delivery.sender.personalize`` reads a database row."""
        return (self.id, self.email, self.name, self.plan, True, self.time_zone or zone,
                self.product, self.order_ref, self.unsubscribe_token)


@dataclass(frozen=True)
class PartDiff:
    part: str
    lines: tuple[str, ...]
    """A unified diff (``---``/``+++`` headers, ``@@`` hunks, ``-``/``+``/`` `` lines); empty
    when the part is unchanged."""


@dataclass(frozen=True)
class PostLength:
    part: str
    weighted: int
    limit: int


@dataclass(frozen=True)
class MessagePreview:
    channel: str
    locale: str
    message_id: int
    parts: Mapping[str, str]
    """What the recipient sees, part by part (a personal message filled for the sample)."""
    stored: Mapping[str, str]
    """The stored parts, tags unfilled (what the bundle hash covers)."""
    personal: bool
    lengths: tuple[PostLength, ...] = ()
    """Each post of the thread as X counts it (channels with a weighted limit only)."""
    previous_stage: str | None = None
    previous_facts_version: int | None = None
    diff: tuple[PartDiff, ...] = ()

    @property
    def changed(self) -> bool:
        return any(d.lines for d in self.diff)


@dataclass(frozen=True)
class BundlePreview:
    incident_id: int
    incident_ref: str
    title: str
    playbook: str
    drill: bool
    stage: str
    stage_title: str | None
    facts_version: int
    bundle_hash: str
    approver: str | None
    """Who approved this exact bundle; None while it awaits approval."""
    first_approver: str | None
    required: int
    latest_facts_version: int
    """The incident's newest fact sheet version: when it is newer than ``facts_version``, the
    stage was not re-triggered with the newest facts."""
    locales: tuple[str, ...]
    """The bundle's locales, the playbook's default first."""
    channels: tuple[str, ...]
    """The bundle's channels, in publication order when the classes were given."""
    sample: SampleRecipient
    messages: Mapping[tuple[str, str], MessagePreview] = field(default_factory=dict)

    def message(self, channel: str, locale: str) -> MessagePreview | None:
        return self.messages.get((channel, locale))


def bundle_preview(engine: Engine, settings: Settings, incident_ref: str, stage: str, *,
                   classes: Mapping[str, type[Channel]] | None = None,
                   channels: Mapping[str, Channel] | None = None,
                   sample: SampleRecipient | None = None) -> BundlePreview:
    """Every message of the stage's stored bundle, channel × locale, as recipients will see it.

    ``classes``: the channel classes (publication order, which channels are personal, their
    weighted limits: ``channels.registry.channel_classes()``); ``channels``: the configured
    channels (``build_channels``), whose unsubscribe and rating links a personal message gets
    (an unconfigured one shows the playbook's fallbacks, as nothing would be sent through it).
    Raises ``IncidentError`` for an unknown incident or a stage never triggered."""
    classes = classes or {}
    channels = channels or {}
    sample = sample or SampleRecipient()
    with session_scope(engine) as session:
        incident = get_incident(session, incident_ref)
        bundle = load_bundle(session, incident, stage)
        book = load_playbook(incident.playbook, settings.playbooks_dir)
        facts = facts_of(latest_facts(session, bundle.incident_id))
        messages = list(session.exec(select(Message).where(
            col(Message.id).in_(bundle.message_ids)).order_by(col(Message.id))))
        previous = _previous_published(session, bundle.incident_id, bundle.message_ids)
        first = first_approval(session, bundle) if bundle.approval is None else None
        order = {name: i for i, name in enumerate(classes)}
        locale_order = {loc: i for i, loc in enumerate(
            (book.default_locale, *(x for x in book.locales if x != book.default_locale)))}
        zone_of = {loc: book.time_zones.get(loc) or facts.time_zone for loc in book.locales}
        previews: dict[tuple[str, str], MessagePreview] = {}
        for message in messages:
            assert message.id is not None
            cls = classes.get(message.channel)
            personal = bool(cls is not None and cls.personal)
            fill = _Filler(book, message.locale, zone_of.get(message.locale) or facts.time_zone,
                           sample, channels.get(message.channel), bundle.incident_id)
            stored = json.loads(message.parts_json)
            shown = fill(stored, message.id) if personal else dict(stored)
            before = previous.get((message.channel, message.locale))
            diff: tuple[PartDiff, ...] = ()
            if before is not None:
                assert before.id is not None
                old = json.loads(before.parts_json)
                diff = _diff(fill(old, before.id) if personal else old, shown,
                             f"{before.stage} (published)", stage)
            limit = cls.limits.max_weighted_length if cls is not None else None
            previews[(message.channel, message.locale)] = MessagePreview(
                channel=message.channel, locale=message.locale, message_id=message.id,
                parts=shown, stored=stored, personal=personal,
                lengths=_lengths(shown, limit) if limit else (),
                previous_stage=before.stage if before is not None else None,
                previous_facts_version=before.facts_version if before is not None else None,
                diff=diff)
        stage_titles = {s.id: s.title for s in book.stages}
        return BundlePreview(
            incident_id=bundle.incident_id, incident_ref=incident.ref, title=incident.title,
            playbook=incident.playbook, drill=incident.drill, stage=stage,
            stage_title=stage_titles.get(stage), facts_version=bundle.facts_version,
            bundle_hash=bundle.bundle_hash,
            approver=bundle.approval.approver if bundle.approval is not None else None,
            first_approver=first.approver if first is not None else None,
            required=book.approvals.required,
            latest_facts_version=latest_facts(session, bundle.incident_id).version,
            locales=tuple(sorted({m.locale for m in messages},
                                 key=lambda x: (locale_order.get(x, len(locale_order)), x))),
            channels=tuple(sorted({m.channel for m in messages},
                                  key=lambda c: (order.get(c, len(order)), c))),
            sample=sample, messages=previews)


class _Filler:
    """Fills a personal message's tags for the sample as publishing fills a recipient's."""

    def __init__(self, book: Playbook, locale: str, zone: str, sample: SampleRecipient,
                 channel: Channel | None, incident_id: int) -> None:
        self.fields = personal_fields(book, locale)
        self.locale, self.zone, self.sample = locale, zone, sample
        self.channel, self.incident_id = channel, incident_id

    def __call__(self, parts: Mapping[str, str], message_id: int) -> dict[str, str]:
        channel = self.channel
        found = personalize(
            [self.sample.row(self.zone)], self.fields, wanted={self.sample.id},
            tags=time_tags(parts), locale=self.locale,
            unsubscribe=unsubscribe_for(channel) if channel is not None else None,
            rating=(rating_for(channel, self.fields, self.incident_id, message_id)
                    if channel is not None else None))
        subs = found[0].substitutions if found else {}
        return {part: apply_substitutions(text, subs) or "" for part, text in parts.items()}


def _previous_published(session: Session, incident_id: int,
                        current: Sequence[int]) -> dict[tuple[str, str], Message]:
    """(channel, locale) → the newest message before ``current`` with a sent delivery."""
    first_current = min(current) if current else None
    stmt = (select(Message).join(Delivery, col(Delivery.message_id) == col(Message.id))
            .where(col(Message.incident_id) == incident_id,
                   col(Delivery.state) == DeliveryState.sent,
                   col(Message.id).not_in(list(current)))
            .distinct().order_by(col(Message.id).desc()))
    out: dict[tuple[str, str], Message] = {}
    for message in session.exec(stmt):
        assert message.id is not None
        if first_current is not None and message.id > first_current:
            continue  # published after this bundle was stored: not "before" it
        out.setdefault((message.channel, message.locale), message)
    return out


def _lengths(parts: Mapping[str, str], limit: int) -> tuple[PostLength, ...]:
    posts = []
    for part, text in parts.items():
        match = _THREAD_PART.fullmatch(part)
        if match is not None:
            posts.append((int(match.group(1) or 1), PostLength(part, x_weighted_length(text),
                                                               limit)))
    return tuple(p for _, p in sorted(posts, key=lambda item: item[0]))


def thread_parts(parts: Mapping[str, str]) -> list[str]:
    """The posts of a thread (``text``, ``text_2``...) in order; other parts after them."""
    def key(part: str) -> tuple[int, str]:
        match = _THREAD_PART.fullmatch(part)
        return (int(match.group(1) or 1), part) if match is not None else (99, part)
    return sorted(parts, key=key)


def _diff(old: Mapping[str, str], new: Mapping[str, str], old_name: str,
          new_name: str) -> tuple[PartDiff, ...]:
    out = []
    for part in thread_parts({**old, **new}):
        lines = tuple(difflib.unified_diff(
            (old.get(part) or "").splitlines(), (new.get(part) or "").splitlines(),
            fromfile=f"{old_name} · {part}", tofile=f"{new_name} · {part}", lineterm="", n=1))
        out.append(PartDiff(part, lines))
    return tuple(out)
