"""Automatic replies: the playbook's pre-approved answer to a question people keep asking.

A playbook's ``listening.replies`` names rules (``eta``: "when will it be fixed?") with cue
phrases per locale; the reply's wording is a template like every other one, approved like every
other one::

    templates/<playbook>/_replies/<rule>.<channel>.<part>.<locale>.j2

Who gets one (:func:`answer_reactions`, run by ``crisiscomms reactions watch`` and the
``watch_reactions`` flow):

- a reaction of an open incident from a source one can answer (an email reply, an X mention or
  reply) whose text matches a rule's cue (casefolded, at word boundaries: "when will" matches
  "When will it be back?" but not "whenwill"; a cue in a script without spaces, Japanese say,
  matches anywhere);
- never one that needs a human (triage flagged it: a person answers it, not a template);
- once per author per incident and source (``ReactionReply`` is unique on it: a second question
  from the same person is for a person), at most ``reply_max_per_run`` per pass (the
  per-process cap) and ``reply_max_per_incident`` per incident.

How it is sent, on the reaction's own channel (``Reaction.channel``), in its locale (the
message's locale, else the detected language when the playbook has it, else the locale whose
cue matched): the reply is rendered through the approval-checking loader (an unapproved or
edited template is refused; a production incident also refuses one that is only provisionally
approved), must carry the status page link, and is written to the ledger before it is sent: a
``Message`` (the rendered reply, its content and template hashes), a ``Delivery`` with a
deterministic key (incident, source, author: the same reply can never be planned twice) and the
``ReactionReply`` row, in one transaction. The row is then claimed and sent through
``delivery/sender.py`` ``send_once`` (retries, ``Retry-After``, the channel's rate limit,
reconciliation of an ambiguous answer), and the outcome recorded. A threaded channel (X) answers
the reaction's own post (``in_reply_to_tweet_id``); an addressed channel (email) writes to the
author. The ledger row is born ``sending`` (claimed by the watcher that wrote it), so a stage's
publishing, which takes an incident's ``planned`` rows, never sends a reply; one left
``sending`` by a crash is asked about at the provider by a later pass (never sent twice); a
failed one is listed by ``crisiscomms failures``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import ApprovalError, CrisisCommsError, RenderError
from crisiscomms.core.locales import fallback_chain
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    RECONCILED,
    Channel,
    DeliveryResult,
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    RenderedMessage,
)
from crisiscomms.delivery.ledger import claim, record, settle_sending
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.sender import SendPolicy, StillSending, send_once
from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.facts import FactSheet
from crisiscomms.incident.models import Incident, Message
from crisiscomms.incident.service import facts_of, latest_facts
from crisiscomms.playbook.listening import ReplyRule
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.reactions.models import Reaction, ReactionReply, ReactionSource
from crisiscomms.reactions.spikes import WATCHER
from crisiscomms.reactions.views import open_incidents
from crisiscomms.render.approvals import ApprovalLock
from crisiscomms.render.environment import Where, content_hash, make_environment
from crisiscomms.render.limits import limit_problems
from crisiscomms.render.loader import CheckingLoader

REPLIES_DIR = "_replies"
"""The folder of a playbook's reply templates (not a stage: stage ids start with a letter)."""
REPLYABLE = (ReactionSource.email_reply, ReactionSource.x_mention, ReactionSource.x_reply)
"""Sources whose author can be answered on the same channel."""
SCAN_CHUNK = 2000
"""Rows fetched at a time while the scan for questions streams."""
_HANDLE = re.compile(r"^@?([A-Za-z0-9_]{1,15})$")


def reply_stage(rule_id: str, reaction_id: int | None = None) -> str:
    """The ``Message.stage`` of a reply (``_replies/eta/<reaction id>``: each reply is its own
    message, since it names its author; never a playbook stage)."""
    base = f"{REPLIES_DIR}/{rule_id}"
    return base if reaction_id is None else f"{base}/{reaction_id}"


def reply_template(playbook: str, rule_id: str, channel: str, part: str, locale: str) -> str:
    return f"{playbook}/{REPLIES_DIR}/{rule_id}.{channel}.{part}.{locale}.j2"


def reply_key(incident_ref: str, source: str, author: str) -> str:
    """The ledger key of the one reply an author may get per incident and source."""
    material = "\x1f".join([incident_ref, "reply", source, author.casefold()])
    return hashlib.sha256(material.encode()).hexdigest()[:40]


# -- matching ------------------------------------------------------------------------------------


def _spaced(ch: str) -> bool:
    """Is ``ch`` a word character of a script that separates words with spaces? (A cue in
    Japanese or Chinese has no word boundary to look for.)"""
    return ch.isalnum() and ord(ch) < 0x2E80


def cue_regex(cue: str) -> str:
    """The cue, casefolded, at word boundaries where its script has them (a regex)."""
    folded = " ".join(cue.casefold().split())
    body = r"\s+".join(re.escape(w) for w in folded.split(" "))
    left = r"(?<!\w)" if folded and _spaced(folded[0]) else ""
    right = r"(?!\w)" if folded and _spaced(folded[-1]) else ""
    return left + body + right


def cue_pattern(cue: str) -> re.Pattern[str]:
    return re.compile(cue_regex(cue))


def cues_pattern(cues: Sequence[str]) -> re.Pattern[str] | None:
    """Any of the cues (one alternation: one search per text and locale, not one per cue)."""
    parts = [f"(?:{cue_regex(c)})" for c in cues if c.strip()]
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True)
class RuleMatcher:
    """The playbook's reply rules, compiled once: which rule (and the locale of its cue) a
    text asks."""

    rules: tuple[tuple[ReplyRule, tuple[tuple[str, re.Pattern[str]], ...]], ...]

    @classmethod
    def of(cls, rules: Sequence[ReplyRule]) -> RuleMatcher:
        return cls(tuple((rule, tuple((loc, pattern) for loc, cues in rule.cues.items()
                                      if (pattern := cues_pattern(cues)) is not None))
                         for rule in rules))

    def match(self, text: str, prefer: Sequence[str] = ()) -> tuple[ReplyRule, str] | None:
        """The first rule one of whose cues ``text`` holds, and that cue's locale; the cues of
        the ``prefer`` locales are tried first (the reaction's own locale)."""
        folded = text.casefold()
        for rule, by_locale in self.rules:
            ordered = sorted(by_locale, key=lambda item: (
                prefer.index(item[0]) if item[0] in prefer else len(prefer)))
            for loc, pattern in ordered:
                if pattern.search(folded):
                    return rule, loc
        return None


def reply_locale(reaction: Reaction, playbook: Playbook, cue_locale: str) -> str:
    """The locale of the answer: the message's, else the detected language's, else the cue's
    (each resolved to a locale of the playbook)."""
    for wanted in (reaction.locale, reaction.language):
        if not wanted:
            continue
        for candidate in fallback_chain(wanted, ""):
            if candidate in playbook.locales:
                return candidate
    return cue_locale if cue_locale in playbook.locales else playbook.default_locale


# -- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedReply:
    parts: dict[str, str]
    template_hashes: dict[str, str]
    content_hash: str


class ReplyRenderer:
    """Renders reply templates through the approval-checking loader (one per pass)."""

    def __init__(self, templates_dir: Path, lock: ApprovalLock) -> None:
        self.lock = lock
        self.loader = CheckingLoader(templates_dir, lock)
        self.env = make_environment(templates_dir, loader=self.loader)
        self.templates_dir = templates_dir

    def parts_of(self, playbook: str, rule_id: str, channel: type[Channel] | Channel,
                 locale: str) -> list[str]:
        """The channel's parts that have a reply template in ``locale``."""
        return [p for p in channel.parts
                if (self.templates_dir / reply_template(playbook, rule_id, channel.name, p,
                                                        locale)).is_file()]

    def reply_channels(self, playbook: Playbook, channels: Mapping[str, Channel]) -> set[str]:
        """The configured channels some rule of the playbook has reply templates for."""
        folder = self.templates_dir / playbook.name / REPLIES_DIR
        if not folder.is_dir():
            return set()
        return {name for name in channels for rule in playbook.listening.replies
                if any(folder.glob(f"{rule.id}.{name}.*.j2"))}

    def render(self, playbook: Playbook, rule_id: str, channel: type[Channel] | Channel,
               locale: str,
               facts: FactSheet, *, author: str, author_name: str | None,
               production: bool) -> RenderedReply:
        """The reply's parts; RenderError/ApprovalError (naming the template) when a part is
        missing, unapproved, not final in production, or lacks the status page link."""
        where = Where(playbook=playbook.name, stage=reply_stage(rule_id), channel=channel.name,
                      locale=locale)
        names = {part: reply_template(playbook.name, rule_id, channel.name, part, locale)
                 for part in self.parts_of(playbook.name, rule_id, channel, locale)}
        if not names:
            wanted = reply_template(playbook.name, rule_id, channel.name, "*", locale)
            raise RenderError(f"{where}: no reply template {wanted}", **where.fields(),
                              reason="no reply template")
        handle = _HANDLE.match(author)
        ctx: dict[str, Any] = {
            "facts": facts.localized(fallback_chain(locale, playbook.default_locale)),
            "locale": locale, "time_zone": playbook.time_zones.get(locale, facts.time_zone),
            "playbook": {"name": playbook.name, "title": playbook.title},
            "author": {"handle": f"@{handle.group(1)}" if handle else "",
                       "name": (author_name or "").strip()},
        }
        parts: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for part, name in names.items():
            with self.loader.recording() as loaded:
                try:
                    text = self.env.get_template(name).render(ctx)
                except CrisisCommsError as exc:
                    raise type(exc)(f"{where}: {exc}", **where.fields(template=name, part=part),
                                    reason=exc.reason) from None
                except Exception as exc:  # a template error: name the template
                    raise RenderError(f"{where}: template {name} failed: {exc}",
                                      **where.fields(template=name, part=part),
                                      reason=str(exc)) from None
            parts[part] = text.strip()
            hashes.update(loaded)
        problems = limit_problems(channel.limits, parts)
        problems += [f"{p} is missing" for p in channel.parts if p not in parts]
        if problems:
            raise RenderError(f"{where}: {'; '.join(problems)}", **where.fields(),
                              reason="; ".join(problems))
        link = str(facts.status_page_url or "")
        lacking = [p for p in parts if p in {"text", "html"}
                   and link not in parts[p] and link.replace("&", "&amp;") not in parts[p]]
        if not link or not parts.keys() & {"text", "html"} or lacking:
            raise RenderError(f"{where}: a reply must carry the status page link {link}",
                              **where.fields(part=",".join(lacking) or None),
                              reason="no status page link")
        if production:
            pending = self.lock.needs_sign_off(hashes, playbook.approvals.required >= 2,
                                               hashes=hashes)
            if pending:
                why = "; ".join(f"{n}: {w}" for n, w in pending.items())
                raise ApprovalError(
                    f"{where}: production sends only final approvals; {why}",
                    **where.fields(), values=tuple(pending), reason=why)
        return RenderedReply(parts, hashes,
                             content_hash(channel.name, locale, parts, hashes))


def _verify(lock: ApprovalLock, message: Message, *, production: bool,
            two_person: bool) -> None:
    """Right before the send: the stored parts are the content their hash says and every
    template they came from is still the approved text (final in production)."""
    parts = json.loads(message.parts_json)
    hashes: dict[str, str] = json.loads(message.template_hashes_json)
    if content_hash(message.channel, message.locale, parts, hashes) != message.content_hash:
        raise ApprovalError(f"reply message {message.id}: content does not match its hash",
                            stage=message.stage, channel=message.channel, locale=message.locale)
    for name, sha in hashes.items():
        entry = lock.entries.get(name)
        why = lock.sign_off(name, two_person=two_person, sha=sha) if production else (
            "not approved" if entry is None else
            "approval is of other content" if entry.sha256 != sha else None)
        if why is not None:
            raise ApprovalError(f"reply message {message.id}: template {name}: {why}",
                                template=name, stage=message.stage, channel=message.channel,
                                locale=message.locale, reason=why)


# -- answering ---------------------------------------------------------------------------------


@dataclass
class ReplyReport:
    sent: int = 0
    failed: int = 0
    refused: list[str] = field(default_factory=list)
    """Replies not sent because their templates are not fit (unapproved, not final in
    production, no status page link...): nothing was written for them."""
    errors: list[str] = field(default_factory=list)
    capped: int = 0
    """Matching reactions left for a later pass by the caps."""

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "refused": list(self.refused),
                "errors": list(self.errors), "capped": self.capped}


@dataclass
class ReplyCursor:
    """The last reaction id each incident's scan has passed (kept by a long-running watcher
    so a pass reads only new reactions; empty: everything is scanned)."""

    after: dict[int, int] = field(default_factory=dict)


def send_policy(settings: Settings) -> SendPolicy:
    """The retry policy of replies from the settings; the faces add the channels' configured
    rates (``channels.registry.configured_rates``), which the domain may not import."""
    return SendPolicy(max_attempts=settings.max_attempts,
                      base_delay_s=settings.retry_base_delay_s,
                      max_delay_s=settings.retry_max_delay_s)


def _replied_authors(session: Session, incident_id: int) -> set[tuple[str, str]]:
    rows = session.execute(select(col(ReactionReply.source), col(ReactionReply.author)).where(
        col(ReactionReply.incident_id) == incident_id))
    return {(str(s), str(a)) for s, a in rows}


def answer_reactions(engine: Engine, settings: Settings, channels: Mapping[str, Channel], *,
                     cursor: ReplyCursor | None = None,
                     policy: SendPolicy | None = None) -> ReplyReport:
    """One pass over the open incidents: send the replies their reactions ask for (see the
    module docstring), within the caps; replies left behind (put back to ``planned`` by a
    retry, or left ``sending`` by a crash past the lease) are settled first."""
    report = ReplyReport()
    cursor = cursor or ReplyCursor()
    policy = policy or send_policy(settings)
    lock = ApprovalLock(settings.templates_dir)
    renderer = ReplyRenderer(settings.templates_dir, lock)
    budget = settings.reply_max_per_run
    with Session(engine, expire_on_commit=False) as session:
        incidents = open_incidents(session)
    for incident in incidents:
        try:
            playbook = load_playbook(incident.playbook, settings.playbooks_dir)
        except CrisisCommsError as exc:
            report.errors.append(f"incident {incident.ref}: {exc}")
            continue
        _send_planned(engine, lock, playbook, incident, channels, policy, report,
                      lease_s=settings.sending_lease_s)
        if not playbook.listening.replies or budget <= 0:
            continue
        budget -= _answer_incident(engine, settings, renderer, playbook, incident, channels,
                                   cursor, policy, report, budget)
    return report


def _questions(engine: Engine, incident_id: int, matcher: RuleMatcher, answering: set[str],
               *, after: int, since: datetime, done: set[tuple[str, str]],
               ) -> tuple[list[tuple[int, ReplyRule, str]], int]:
    """(reaction id, rule, cue locale) of the unanswered reactions that ask a rule's question,
    in id order, and the last id read. One streamed read of a few columns (the recent,
    unflagged reactions on a channel that can answer), matched here: most reactions ask
    nothing, and only the ones that do are kept."""
    stmt = (select(col(Reaction.id), col(Reaction.source), col(Reaction.author),
                   col(Reaction.text), col(Reaction.locale), col(Reaction.language))
            .where(col(Reaction.incident_id) == incident_id, col(Reaction.id) > after,
                   col(Reaction.received_at) >= since,
                   col(Reaction.source).in_([s.value for s in REPLYABLE]),
                   col(Reaction.channel).in_(sorted(answering)),
                   col(Reaction.needs_human).is_(False))
            .order_by(col(Reaction.id)))
    found: list[tuple[int, ReplyRule, str]] = []
    last = after
    with engine.connect() as conn:
        for rid, source, author, text, locale, language in conn.execution_options(
                yield_per=SCAN_CHUNK).execute(stmt):
            last = int(rid or 0)
            if (str(source), str(author)) in done:
                continue
            match = matcher.match(str(text), [loc for loc in (locale, language) if loc])
            if match is not None:
                found.append((last, *match))
    return found, last


def _answer_incident(engine: Engine, settings: Settings, renderer: ReplyRenderer,
                     playbook: Playbook, incident: Incident, channels: Mapping[str, Channel],
                     cursor: ReplyCursor, policy: SendPolicy, report: ReplyReport,
                     budget: int) -> int:
    """Replies of one incident within ``budget``; answers how many were written."""
    assert incident.id is not None
    answering = renderer.reply_channels(playbook, channels)
    if not answering:
        return 0
    written = capped = 0
    refused: set[tuple[str, str, str]] = set()
    with Session(engine, expire_on_commit=False) as session:
        so_far = int(session.execute(select(func.count()).select_from(ReactionReply).where(
            col(ReactionReply.incident_id) == incident.id)).scalar_one())
        allowed = min(budget, settings.reply_max_per_incident - so_far)
        done = _replied_authors(session, incident.id)
        facts_row = latest_facts(session, incident.id)
        facts = facts_of(facts_row)
        session.commit()  # no read transaction held while the scan streams
        questions, last = _questions(
            engine, incident.id, RuleMatcher.of(playbook.listening.replies), answering,
            after=cursor.after.get(incident.id, 0),
            since=utcnow() - timedelta(minutes=settings.reply_max_age_minutes), done=done)
        resume_after = last
        for rid, rule, cue_locale in questions:
            reaction = session.get(Reaction, rid)
            assert reaction is not None and reaction.id is not None
            who = (str(reaction.source), reaction.author)
            channel = channels[str(reaction.channel)]
            if who in done:
                continue  # asked twice in this scan: answered once
            if written >= allowed:
                capped += 1
                resume_after = min(resume_after, rid - 1)  # a later pass answers it
                continue
            if channel.recipients is not None and _undeliverable(session, reaction.author):
                done.add(who)  # bounced or reported us as spam: never written to again
                continue
            locale = reply_locale(reaction, playbook, cue_locale)
            if (rule.id, channel.name, locale) in refused:
                resume_after = min(resume_after, rid - 1)
                continue
            try:
                rendered = renderer.render(
                    playbook, rule.id, channel, locale, facts, author=reaction.author,
                    author_name=reaction.author_name, production=not incident.drill)
            except CrisisCommsError as exc:
                refused.add((rule.id, channel.name, locale))
                report.refused.append(f"incident {incident.ref}: {exc}")
                resume_after = min(resume_after, rid - 1)  # answered once its templates are
                continue
            try:
                planned = _plan(session, incident, reaction, rule.id, locale, channel,
                                facts_row.version, rendered)
            except CrisisCommsError as exc:
                report.errors.append(f"incident {incident.ref}: {exc}")
                planned = None
            done.add(who)
            if planned is None:
                continue  # another watcher planned it first
            written += 1
            _deliver(engine, renderer.lock, playbook, incident, planned, reaction, channel,
                     facts, policy, report)
        report.capped += capped
        cursor.after[incident.id] = resume_after
    return written


UNDELIVERABLE = ("bounce", "dropped", "spamreport")
"""Provider suppressions after which nobody is written to, not even in reply (an
``unsubscribe`` from our updates does not stop the answer to a question they asked)."""


def _undeliverable(session: Session, address: str) -> bool:
    """Has a provider said this address bounces, drops or reported us as spam?"""
    found = session.execute(select(col(Recipient.suppression)).where(
        func.lower(col(Recipient.email)) == address.strip().lower())).scalar()
    return found in UNDELIVERABLE


def _plan(session: Session, incident: Incident, reaction: Reaction, rule_id: str, locale: str,
          channel: Channel, facts_version: int, rendered: RenderedReply, *,
          actor: str = WATCHER) -> Delivery | None:
    """Message, ledger row and ReactionReply in one transaction, audited as ``actor`` (the
    watcher, or the person who sent it from the dashboard); None when the author's reply
    exists already (the unique key said so)."""
    assert incident.id is not None and reaction.id is not None
    try:
        message = Message(incident_id=incident.id, stage=reply_stage(rule_id, reaction.id),
                          facts_version=facts_version, channel=channel.name, locale=locale,
                          parts_json=json.dumps(rendered.parts, ensure_ascii=False),
                          content_hash=rendered.content_hash,
                          template_hashes_json=json.dumps(rendered.template_hashes,
                                                          sort_keys=True))
        session.add(message)
        session.flush()
        assert message.id is not None
        recipient = str(reaction.recipient_id) if reaction.recipient_id is not None else ""
        # born claimed (``sending``, attempt 1): a stage's publishing picks up the incident's
        # ``planned`` rows, and a reply is not a stage's message (the watcher sends it)
        delivery = Delivery(key=reply_key(incident.ref, str(reaction.source), reaction.author),
                            incident_id=incident.id, message_id=message.id,
                            channel=channel.name, locale=locale, batch_no=0,
                            recipient_ids=recipient, recipient_count=1,
                            state=DeliveryState.sending, attempts=1)
        session.add(delivery)
        session.flush()
        session.add(ReactionReply(incident_id=incident.id, source=reaction.source,
                                  author=reaction.author, reaction_id=reaction.id,
                                  delivery_id=delivery.id))
        session.add(AuditEvent(actor=actor, action="reply.planned", incident_id=incident.id,
                               detail_json=json.dumps({
                                   "rule": rule_id, "reaction_id": reaction.id,
                                   "delivery_key": delivery.key, "locale": locale,
                                   "content_hash": rendered.content_hash}, sort_keys=True)))
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        exists = session.execute(select(col(ReactionReply.id)).where(
            col(ReactionReply.incident_id) == incident.id,
            col(ReactionReply.source) == str(reaction.source),
            col(ReactionReply.author) == reaction.author)).first()
        if exists is None:  # not the expected race with another watcher: say so
            raise CrisisCommsError(f"reply to reaction {reaction.id} not planned: "
                                   f"{type(exc.orig).__name__}: {exc.orig}",
                                   stage=reply_stage(rule_id)) from None
        return None
    return delivery


def _batch(message: Message, delivery: Delivery, reaction: Reaction, channel: Channel,
           incident: Incident, facts: FactSheet) -> OutboundBatch:
    rendered = RenderedMessage(playbook=incident.playbook, stage=message.stage,
                               channel=message.channel, locale=message.locale,
                               parts=json.loads(message.parts_json),
                               content_hash=message.content_hash)
    recipients: tuple[OutboundRecipient, ...] = ()
    if channel.recipients is not None:  # an addressed channel (email): write to the author
        recipients = (OutboundRecipient(reaction.recipient_id or 0, reaction.author, {}),)
    return OutboundBatch(key=delivery.key, batch_no=0, facts=facts,
                         incident_status=str(incident.status), message=rendered,
                         recipients=recipients,
                         reply_to=reaction.source_id if channel.threaded else None)


def _deliver(engine: Engine, lock: ApprovalLock, playbook: Playbook, incident: Incident,
             delivery: Delivery, reaction: Reaction, channel: Channel, facts: FactSheet,
             policy: SendPolicy, report: ReplyReport, *, claimed: bool = True) -> None:
    """Send the reply's ledger row (claimed first unless ``claimed``: a row born ``sending``
    is its writer's), verifying its approval again, once; record the outcome."""
    assert delivery.id is not None
    with Session(engine, expire_on_commit=False) as session:
        if not claimed and not claim(session, [delivery.id]):
            return  # another watcher has it
        message = session.get(Message, delivery.message_id)
        assert message is not None
        try:
            _verify(lock, message, production=not incident.drill,
                    two_person=playbook.approvals.required >= 2)
            result, attempts = send_once(
                channel, _batch(message, delivery, reaction, channel, incident, facts), policy)
        except ApprovalError as exc:
            result, attempts = DeliveryResult.permanent(str(exc)), 1
        except StillSending as exc:
            report.errors.append(f"reply {delivery.key}: still sending ({exc}); the next "
                                 "pass asks the provider once the sending lease is over")
            return
        except ValueError as exc:  # a batch the provider can never accept
            result, attempts = DeliveryResult.permanent(str(exc)), 1
        record(session, delivery.id, result, attempts)
    if result.outcome is Outcome.sent:
        report.sent += 1
    else:
        report.failed += 1
        report.errors.append(f"reply to {reaction.author} ({incident.ref}): {result.reason}")


def _send_planned(engine: Engine, lock: ApprovalLock, playbook: Playbook, incident: Incident,
                  channels: Mapping[str, Channel], policy: SendPolicy,
                  report: ReplyReport, *, lease_s: float) -> None:
    """Replies left behind: ``planned`` ones (put back by ``crisiscomms retry``) are sent now;
    ones left ``sending`` for longer than the lease (a crash mid-send) are first asked about at
    the provider (``Channel.reconcile``): it has them → sent; it does not → sent now; it cannot
    say → ``unconfirmed``, for a person (``crisiscomms failures``)."""
    stale = utcnow() - timedelta(seconds=lease_s)
    with Session(engine, expire_on_commit=False) as session:
        rows = list(session.execute(
            select(Delivery, Reaction)
            .join(ReactionReply, col(ReactionReply.delivery_id) == col(Delivery.id))
            .join(Reaction, col(Reaction.id) == col(ReactionReply.reaction_id))
            .where(col(ReactionReply.incident_id) == incident.id,
                   (col(Delivery.state) == DeliveryState.planned)
                   | ((col(Delivery.state) == DeliveryState.sending)
                      & (col(Delivery.updated_at) < stale)))).all())
        facts = facts_of(latest_facts(session, incident.id)) if rows and incident.id else None
    for delivery, reaction in rows:
        channel = channels.get(delivery.channel)
        if channel is None or facts is None or delivery.id is None:
            continue
        if delivery.state == DeliveryState.sending:
            with Session(engine, expire_on_commit=False) as session:
                message = session.get(Message, delivery.message_id)
                assert message is not None
                batch = _batch(message, delivery, reaction, channel, incident, facts)
                try:
                    answer = channel.reconcile(batch)
                except Exception as exc:  # the provider cannot be asked now: next pass
                    report.errors.append(f"reply {delivery.key}: provider not asked: {exc}")
                    continue
                if answer is True:
                    settle_sending(session, delivery.id, DeliveryState.sent,
                                   provider_id=batch.progress.joined or RECONCILED)
                    report.sent += 1
                    continue
                if answer is None:
                    settle_sending(session, delivery.id, DeliveryState.unconfirmed,
                                   error=f"left sending; {channel.name} cannot confirm key "
                                         f"{delivery.key}: check it, then crisiscomms retry "
                                         "--unconfirmed")
                    report.errors.append(f"reply {delivery.key}: unconfirmed")
                    continue
                if not settle_sending(session, delivery.id, DeliveryState.planned):
                    continue
        _deliver(engine, lock, playbook, incident, delivery, reaction, channel, facts, policy,
                 report, claimed=False)


def replies_of(session: Session, incident_id: int) -> list[tuple[ReactionReply, Delivery | None]]:
    """An incident's automatic replies with their ledger rows (newest first)."""
    rows = session.execute(
        select(ReactionReply, Delivery)
        .join(Delivery, col(Delivery.id) == col(ReactionReply.delivery_id), isouter=True)
        .where(col(ReactionReply.incident_id) == incident_id)
        .order_by(col(ReactionReply.id).desc())).all()
    return [(r, d) for r, d in rows]


