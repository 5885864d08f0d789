"""Incident service: trigger a playbook stage, approve its bundle, plan its deliveries.

Everything that can be refused (unknown playbook, missing fact, undefined variable, over-limit
text, unapproved template) is checked before the first database write, so bad input changes
nothing.

**Who.** Every act is by an :class:`~crisiscomms.identity.identities.Identity` the face
authenticated (the CLI's OS account or signing key, the dashboard's signed-in user, an API
key's owner); the audit trail's ``actor`` and an ``Approval``'s ``approver`` hold its id, the
typed name is kept in the audit detail as ``display_name``. The two-person rule compares ids
only.

**Production and drills.** An incident is a drill when triggered with ``drill=True`` or in
``Settings.mode == "drill"``; that is fixed when it is created. A production incident sends only
messages whose templates have a final approval (:meth:`ApprovalLock.needs_sign_off`): ``trigger``
refuses before anything is stored, and ``approve`` and ``plan_bundle`` check again, each naming
every template that still needs sign-off. Drills may use provisional approvals.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import session_scope
from crisiscomms.core.errors import ApprovalError, FactsError, IncidentError, Location
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel, RenderedMessage
from crisiscomms.delivery.ledger import PlanResult, plan_messages
from crisiscomms.identity.identities import Identity
from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.incident.models import (
    Approval,
    FactSheetVersion,
    Incident,
    IncidentStatus,
    Message,
)
from crisiscomms.playbook.loader import Playbook, playbook_on_disk
from crisiscomms.playbook.notices import fact_problems
from crisiscomms.render.approvals import ApprovalLock, bundle_hash
from crisiscomms.render.environment import StageRenderer, content_hash
from crisiscomms.statuspage.model import LifecycleError, check_transition

FIRST_OF_TWO = "first_of_two"
"""Approval kind of the first of two people under a playbook's two-person rule (not yet an
approval of the bundle)."""


@dataclass(frozen=True)
class StageBundle:
    """One stage of one incident, rendered from one fact sheet version."""

    incident_id: int
    incident_ref: str
    playbook: str
    stage: str
    facts_version: int
    facts_hash: str
    message_ids: tuple[int, ...]
    bundle_hash: str
    approval: Approval | None

    @property
    def approved(self) -> bool:
        return self.approval is not None


def audit(
    session: Session, actor: Identity | str, action: str, incident_id: int | None, **detail: Any
) -> None:
    """Append to the audit trail: ``actor`` is an identity (its id is recorded, its typed name
    and how it was authenticated go in the detail) or the engine's own name for itself."""
    if isinstance(actor, Identity):
        detail = {**detail, "display_name": actor.display_name, "auth": actor.method}
        actor = actor.id
    session.add(AuditEvent(actor=actor, action=action, incident_id=incident_id,
                           detail_json=json.dumps(detail, default=str, sort_keys=True)))


def production_refusal(
    lock: ApprovalLock, playbook: Playbook, incident_ref: str, stage: str,
    template_hashes: Mapping[str, str], *, when: str,
) -> ApprovalError | None:
    """The refusal of a production send whose templates are not all final-approved (None: they
    are): one problem per template, each naming it and why. ``template_hashes``: each template
    and the content the messages were rendered from."""
    pending = lock.needs_sign_off(template_hashes, playbook.approvals.required >= 2,
                                  hashes=template_hashes)
    if not pending:
        return None
    problems = [ApprovalError(f"template {name}: {why}", playbook=playbook.name, stage=stage,
                              template=name, reason=why) for name, why in pending.items()]
    reason = (f"{len(pending)} template(s) lack a final approval and production sends only "
              f"final ones; {when}. Sign them off (crisiscomms templates approve --final "
              "TEMPLATE...) or rehearse with crisiscomms drill: "
              + "; ".join(f"{name}: {why}" for name, why in pending.items()))
    return ApprovalError(f"incident {incident_ref}, stage {stage}: {reason}",
                         playbook=playbook.name, stage=stage, values=tuple(pending),
                         reason=reason, problems=problems)


def _message_template_hashes(messages: Iterable[Message]) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for message in messages:
        hashes.update(json.loads(message.template_hashes_json or "{}"))
    return hashes


def get_incident(session: Session, ref: str) -> Incident:
    incident = session.exec(select(Incident).where(Incident.ref == ref)).first()
    if incident is None:
        raise IncidentError(f"unknown incident {ref!r}")
    return incident


def latest_facts(session: Session, incident_id: int) -> FactSheetVersion:
    row = session.exec(
        select(FactSheetVersion)
        .where(FactSheetVersion.incident_id == incident_id)
        .order_by(col(FactSheetVersion.version).desc())
    ).first()
    if row is None:
        raise IncidentError(f"incident {incident_id} has no fact sheet")
    return row


def facts_of(version: FactSheetVersion) -> FactSheet:
    return FactSheet.model_validate_json(version.facts_json)


def _default_ref(playbook: Playbook) -> str:
    return f"{playbook.name.upper().replace('_', '-')}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def prepare_facts(
    playbook: Playbook,
    data: Mapping[str, Any],
    settings: Settings,
    *,
    base: FactSheet | None,
) -> FactSheet:
    raw = dict(data)
    if base is None:
        raw.setdefault("incident_ref", _default_ref(playbook))
        raw.setdefault("organization", settings.organization)
        raw.setdefault("status_page_url", settings.status_page_url)
        raw.setdefault("started_at", datetime.now(UTC).isoformat())
    elif "incident_ref" in raw and raw["incident_ref"] != base.incident_ref:
        raise FactsError(
            f"facts name incident {raw['incident_ref']!r} but this is {base.incident_ref!r}",
            playbook=playbook.name, field="incident_ref", values=(str(raw["incident_ref"]),))
    return build_fact_sheet(raw, base=base)


def check_stage_transition(incident: Incident, stage: str, new_status: str) -> None:
    """Refuse a stage whose incident status the lifecycle does not allow from where the
    incident is (resolved → investigating needs a stage whose id starts with ``reopen``):
    LifecycleError naming the incident, its status and the stage."""
    current = str(incident.status) if incident.status is not None else None
    try:
        check_transition(current, new_status, reopen=stage.startswith("reopen"))
    except LifecycleError as exc:
        raise LifecycleError(
            f"incident {incident.ref}: stage {stage!r} refused, nothing was sent: {exc}",
            playbook=incident.playbook, stage=stage, field=exc.field, values=exc.values,
            reason=exc.reason) from None


def trigger(
    engine: Engine,
    settings: Settings,
    channels: Mapping[str, type[Channel]],
    *,
    playbook_name: str,
    facts: Mapping[str, Any],
    stage: str | None = None,
    actor: Identity,
    drill: bool = False,
    auto_send: bool = True,
    audit_detail: Mapping[str, Any] | None = None,
) -> StageBundle:
    """Build the fact sheet, render the stage, store the bundle; auto-approve ``auto_send``.

    ``auto_send=False``: the stage waits for a human even when the playbook marks it
    ``auto_send`` (what an event proposes, such as a resolved alert, is never sent alone).
    ``audit_detail``: more facts for the ``stage.triggered`` audit row (the intake event that
    triggered it, so handling that event again finds its bundle instead of rendering anew).

    A new incident is a drill when ``drill`` or ``settings.mode == "drill"``; a production one
    is refused, before anything is stored, when a template of the stage lacks a final
    approval."""
    playbook = playbook_on_disk(playbook_name, settings.playbooks_dir)
    playbook.check_channels(channels)
    ref = facts.get("incident_ref")
    with session_scope(engine) as session:
        incident = (
            session.exec(select(Incident).where(Incident.ref == ref)).first() if ref else None
        )
        if incident is not None and incident.playbook != playbook.name:
            raise IncidentError(
                f"incident {ref!r} runs playbook {incident.playbook!r}, not {playbook.name!r}",
                playbook=playbook.name, field="playbook", values=(playbook.name,))
        base_version = latest_facts(session, incident.id) if incident and incident.id else None
        base = facts_of(base_version) if base_version else None
        stage_obj = playbook.stage(stage or playbook.stages[0].id)
        if incident is not None:  # refused here, before anything is rendered, planned or sent
            check_stage_transition(incident, stage_obj.id, str(stage_obj.incident_status))
        sheet = prepare_facts(playbook, facts, settings, base=base)
        problems = fact_problems(playbook, stage_obj, sheet)
        if problems:
            raise FactsError(
                f"playbook {playbook.name}, stage {stage_obj.id}: {'; '.join(map(str, problems))}",
                playbook=playbook.name, stage=stage_obj.id, problems=problems)
        lock = ApprovalLock(settings.templates_dir)
        renderer = StageRenderer(settings.templates_dir, channels, approvals=lock)
        rendered = renderer.render_stage(playbook, stage_obj, sheet)  # raises before any write
        is_drill = incident.drill if incident is not None else (
            drill or settings.mode == "drill")
        if not is_drill:
            refusal = production_refusal(
                lock, playbook, sheet.incident_ref, stage_obj.id,
                {n: h for _, hashes in rendered for n, h in hashes.items()},
                when="nothing was stored or sent")
            if refusal is not None:
                raise refusal

        if incident is None:
            incident = Incident(ref=sheet.incident_ref, playbook=playbook.name, title=sheet.title,
                                severity=sheet.severity, drill=is_drill)
            session.add(incident)
            session.flush()
            audit(session, actor, "incident.created", incident.id, playbook=playbook.name)
        assert incident.id is not None
        incident.title, incident.severity = sheet.title, sheet.severity
        incident.status = stage_obj.incident_status
        incident.updated_at = utcnow()
        if stage_obj.incident_status is IncidentStatus.resolved:
            incident.resolved_at = sheet.resolved_at or utcnow()
        version = _store_facts(session, incident.id, sheet, base_version, actor)
        messages = [_store_message(session, incident.id, stage_obj.id, version.version, m, h)
                    for m, h in rendered]
        digest = bundle_hash(m.content_hash for m in messages)
        approval = _find_approval(session, incident.id, stage_obj.id, version.version, digest)
        if approval is None and stage_obj.auto_send and auto_send:
            approval = _add_approval(session, incident.id, stage_obj.id, version.version, digest,
                                     approver=f"auto_send policy of playbook {playbook.name}",
                                     kind="auto_send")
        audit(session, actor, "stage.triggered", incident.id, **dict(audit_detail or {}),
              stage=stage_obj.id, facts_version=version.version, bundle_hash=digest)
        return StageBundle(incident.id, incident.ref, playbook.name, stage_obj.id, version.version,
                           version.facts_hash, tuple(m.id for m in messages if m.id), digest,
                           approval)


def _store_facts(
    session: Session, incident_id: int, sheet: FactSheet, base: FactSheetVersion | None,
    actor: Identity,
) -> FactSheetVersion:
    digest = sheet.content_hash()
    if base is not None and base.facts_hash == digest:
        return base
    version = FactSheetVersion(
        incident_id=incident_id,
        version=(base.version + 1) if base else 1,
        facts_json=sheet.model_dump_json(),
        facts_hash=digest,
        created_by=actor.id,
    )
    session.add(version)
    session.flush()
    return version


def _store_message(
    session: Session, incident_id: int, stage: str, facts_version: int, rendered: RenderedMessage,
    template_hashes: dict[str, str],
) -> Message:
    existing = session.exec(
        select(Message).where(
            Message.incident_id == incident_id,
            Message.stage == stage,
            Message.facts_version == facts_version,
            Message.channel == rendered.channel,
            Message.locale == rendered.locale,
        )
    ).first()
    if existing is not None:
        if existing.content_hash != rendered.content_hash:
            raise ApprovalError(
                f"stage {stage} ({rendered.channel}, {rendered.locale}) renders differently from "
                "the stored message for the same facts; templates changed mid-incident — "
                "post the change as a new update with new facts",
                playbook=rendered.playbook, stage=stage, channel=rendered.channel,
                locale=rendered.locale)
        return existing
    message = Message(
        incident_id=incident_id, stage=stage, facts_version=facts_version,
        channel=rendered.channel, locale=rendered.locale,
        parts_json=json.dumps(dict(rendered.parts), ensure_ascii=False, sort_keys=True),
        content_hash=rendered.content_hash,
        template_hashes_json=json.dumps(template_hashes, sort_keys=True),
    )
    session.add(message)
    session.flush()
    return message


def _find_approval(
    session: Session, incident_id: int, stage: str, facts_version: int, digest: str
) -> Approval | None:
    return session.exec(
        select(Approval).where(
            Approval.incident_id == incident_id,
            Approval.stage == stage,
            Approval.facts_version == facts_version,
            Approval.bundle_hash == digest,
            Approval.kind != FIRST_OF_TWO,
        )
    ).first()


def _add_approval(
    session: Session, incident_id: int, stage: str, facts_version: int, digest: str, *,
    approver: Identity | str, kind: str, first: str | None = None,
) -> Approval:
    """An ``Approval`` row: ``approver`` is the identity's id (``first + second`` under the
    two-person rule), or the engine's own name for an ``auto_send`` policy."""
    who = approver.id if isinstance(approver, Identity) else approver
    approval = Approval(incident_id=incident_id, stage=stage, facts_version=facts_version,
                        bundle_hash=digest, approver=f"{first} + {who}" if first else who,
                        kind=kind)
    session.add(approval)
    session.flush()
    audit(session, approver, "bundle.approved", incident_id, stage=stage,
          facts_version=facts_version, bundle_hash=digest, kind=kind)
    return approval


def stage_messages(
    session: Session, incident_id: int, stage: str, facts_version: int | None = None
) -> list[Message]:
    """The messages of a stage for a fact sheet version (default: the newest that has one)."""
    stmt = select(Message).where(Message.incident_id == incident_id, Message.stage == stage)
    if facts_version is None:
        latest = session.exec(stmt.order_by(col(Message.facts_version).desc())).first()
        if latest is None:
            return []
        facts_version = latest.facts_version
    return list(session.exec(
        stmt.where(Message.facts_version == facts_version).order_by(col(Message.id))
    ))


def load_bundle(session: Session, incident: Incident, stage: str) -> StageBundle:
    assert incident.id is not None
    messages = stage_messages(session, incident.id, stage)
    if not messages:
        raise IncidentError(f"incident {incident.ref} has no rendered stage {stage!r}; trigger it",
                            playbook=incident.playbook, stage=stage)
    version = messages[0].facts_version
    facts_row = session.exec(select(FactSheetVersion).where(
        FactSheetVersion.incident_id == incident.id, FactSheetVersion.version == version)).one()
    digest = bundle_hash(m.content_hash for m in messages)
    return StageBundle(incident.id, incident.ref, incident.playbook, stage, version,
                       facts_row.facts_hash, tuple(m.id for m in messages if m.id), digest,
                       _find_approval(session, incident.id, stage, version, digest))


def approve(engine: Engine, *, incident_ref: str, stage: str, approver: Identity,
            kind: str = "human", playbooks_dir: Path | None = None,
            settings: Settings | None = None, seen_hash: str | None = None) -> StageBundle:
    """Approve the exact rendered bundle of a stage (idempotent) as ``approver``, an identity
    the face authenticated (its id is recorded and compared; its typed name only shown).

    A production incident's bundle is refused while a template it came from lacks a final
    approval. Under a playbook's two-person rule (``approvals: {required: 2}``) the identity
    that triggered the bundle cannot approve it, the first approver is recorded as
    ``first_of_two`` (the bundle stays unapproved) and a different second identity completes
    the approval, which names both.

    ``seen_hash`` is the bundle hash the approver was shown (the dashboard's preview, the CLI's
    ``--bundle``; a unique prefix of at least 12 characters will do): when the stage's bundle
    is no longer that one (new facts, re-rendered templates), nothing is approved and the error
    says to look again."""
    if not isinstance(approver, Identity):
        raise ApprovalError("an approval needs an authenticated identity, not a typed name",
                            stage=stage, field="approver")
    with session_scope(engine) as session:
        incident = get_incident(session, incident_ref)
        bundle = load_bundle(session, incident, stage)
        if seen_hash is not None:
            check_seen_hash(bundle, seen_hash)
        if bundle.approval is not None:
            return bundle
        if settings is None and (playbooks_dir is None or not incident.drill):
            settings = Settings()
        if playbooks_dir is None:
            assert settings is not None
            playbooks_dir = settings.playbooks_dir
        playbook = playbook_on_disk(incident.playbook, playbooks_dir)
        if not incident.drill:
            assert incident.id is not None and settings is not None
            refusal = production_refusal(
                ApprovalLock(settings.templates_dir), playbook, incident.ref, stage,
                _message_template_hashes(stage_messages(session, incident.id, stage)),
                when="nothing was approved or sent")
            if refusal is not None:
                raise refusal
        if playbook.approvals.required >= 2:
            return _approve_two_person(session, bundle, approver, kind)
        approval = _add_approval(session, bundle.incident_id, stage, bundle.facts_version,
                                 bundle.bundle_hash, approver=approver, kind=kind)
        return replace(bundle, approval=approval)


MIN_SEEN_HASH = 12
"""Characters of a bundle hash an approver must name (what the CLI and the dashboard show)."""


def check_seen_hash(bundle: StageBundle, seen_hash: str) -> None:
    """Refuse an approval of a bundle other than the one the approver saw."""
    seen = seen_hash.strip().lower()
    where = f"incident {bundle.incident_ref}, stage {bundle.stage}"
    if len(seen) < MIN_SEEN_HASH:
        raise ApprovalError(f"{where}: name at least {MIN_SEEN_HASH} characters of the bundle "
                            "hash you reviewed", playbook=bundle.playbook, stage=bundle.stage,
                            field="bundle_hash", values=(seen_hash,))
    if not bundle.bundle_hash.startswith(seen):
        reason = (f"the bundle changed since it was shown (you saw {seen[:12]}, it is now "
                  f"{bundle.bundle_hash[:12]}); nothing was approved: review it again")
        raise ApprovalError(f"{where}: {reason}", playbook=bundle.playbook, stage=bundle.stage,
                            field="bundle_hash", values=(seen_hash,), reason=reason)


def _approve_two_person(session: Session, bundle: StageBundle, approver: Identity,
                        kind: str) -> StageBundle:
    author = _bundle_author(session, bundle)
    where = f"incident {bundle.incident_ref}, stage {bundle.stage}"
    at: Location = {"playbook": bundle.playbook, "stage": bundle.stage, "field": "approver"}
    if author is not None and approver.same_as(author):
        reason = (f"identity {approver.id} (here as {approver.display_name!r}) triggered this "
                  "bundle and cannot approve it; the playbook needs two other people, and "
                  "names are only for display")
        raise ApprovalError(f"{where}: {reason}", **at, values=(approver.id,), reason=reason)
    first = first_approval(session, bundle)
    if first is None:
        _add_approval(session, bundle.incident_id, bundle.stage, bundle.facts_version,
                      bundle.bundle_hash, approver=approver, kind=FIRST_OF_TWO)
        return bundle
    if approver.same_as(first.approver):
        reason = (f"identity {approver.id} (here as {approver.display_name!r}) approved "
                  "already; the playbook needs a second person, and names are only for "
                  "display")
        raise ApprovalError(f"{where}: {reason}", **at, values=(approver.id,), reason=reason)
    approval = _add_approval(session, bundle.incident_id, bundle.stage, bundle.facts_version,
                             bundle.bundle_hash, approver=approver,
                             kind="two_person" if kind == "human" else kind,
                             first=first.approver)
    return replace(bundle, approval=approval)


def first_approval(session: Session, bundle: StageBundle) -> Approval | None:
    """The first of two approvals recorded for exactly this bundle, or None."""
    return session.exec(select(Approval).where(
        Approval.incident_id == bundle.incident_id, Approval.stage == bundle.stage,
        Approval.facts_version == bundle.facts_version, Approval.bundle_hash == bundle.bundle_hash,
        Approval.kind == FIRST_OF_TWO)).first()


def bundle_trigger(session: Session, bundle: StageBundle) -> AuditEvent | None:
    """The audit trail's ``stage.triggered`` of this exact bundle (the newest when it was
    triggered more than once): who triggered it, and when."""
    rows = session.exec(select(AuditEvent).where(
        AuditEvent.incident_id == bundle.incident_id, AuditEvent.action == "stage.triggered"
    ).order_by(col(AuditEvent.id).desc())).all()
    for row in rows:
        if json.loads(row.detail_json).get("bundle_hash") == bundle.bundle_hash:
            return row
    return None


def _bundle_author(session: Session, bundle: StageBundle) -> str | None:
    """The identity id that triggered this exact bundle (the two-person rule's author)."""
    event = bundle_trigger(session, bundle)
    return event.actor if event is not None else None


def bundle_approval(session: Session, incident_id: int, stage: str,
                    facts_version: int) -> Approval | None:
    """The approval of exactly the stored bundle of a stage (every message of that fact sheet
    version, by content hash), or None: a first of two approvals or an approval of other
    content does not count."""
    # only the hashes, in the order stage_messages gives: every send asks this, and loading
    # the stage's messages whole (all their parts) was 7% of the warm worker's CPU
    hashes = session.exec(
        select(Message.content_hash)
        .where(Message.incident_id == incident_id, Message.stage == stage,
               Message.facts_version == facts_version)
        .order_by(col(Message.id))).all()
    if not hashes:
        return None
    return _find_approval(session, incident_id, stage, facts_version, bundle_hash(hashes))


def verify_approved(session: Session, message: Message) -> None:
    """A send is backed by an approval of exactly this content, or it does not happen."""
    parts = json.loads(message.parts_json)
    templates = json.loads(message.template_hashes_json)  # partials included
    if content_hash(message.channel, message.locale, parts, templates) != message.content_hash:
        raise ApprovalError(f"message {message.id} content does not match its approved hash",
                            stage=message.stage, channel=message.channel, locale=message.locale)
    if bundle_approval(session, message.incident_id, message.stage,
                       message.facts_version) is None:
        raise ApprovalError(
            f"stage {message.stage} of incident {message.incident_id} is not approved for this "
            "exact content; run: crisiscomms approve",
            stage=message.stage, channel=message.channel, locale=message.locale)


def plan_bundle(engine: Engine, settings: Settings, channels: Mapping[str, type[Channel]],
                bundle: StageBundle) -> PlanResult:
    """Write the ledger rows of an approved bundle."""
    if not bundle.approved:
        raise ApprovalError(
            f"incident {bundle.incident_ref}, stage {bundle.stage} awaits approval: "
            f"crisiscomms approve {bundle.incident_ref} --stage {bundle.stage}",
            playbook=bundle.playbook, stage=bundle.stage)
    playbook = playbook_on_disk(bundle.playbook, settings.playbooks_dir)
    with session_scope(engine) as session:
        messages = list(
            session.exec(select(Message).where(col(Message.id).in_(bundle.message_ids)))
        )
        incident = session.get(Incident, bundle.incident_id)
        if incident is not None and not incident.drill:
            refusal = production_refusal(
                ApprovalLock(settings.templates_dir), playbook, bundle.incident_ref,
                bundle.stage, _message_template_hashes(messages),
                when="nothing was planned or sent")
            if refusal is not None:
                raise refusal
        facts = facts_of(session.exec(select(FactSheetVersion).where(
            FactSheetVersion.incident_id == bundle.incident_id,
            FactSheetVersion.version == bundle.facts_version)).one())
        return plan_messages(
            session,
            incident_ref=bundle.incident_ref,
            facts_hash=bundle.facts_hash,
            messages=messages,
            audiences={n: c.recipients for n, c in channels.items() if c.recipients is not None},
            locales=playbook.locales,
            default_locale=playbook.default_locale,
            batch_size=settings.email_batch_size,
            components=facts.components,  # status page subscribers of these components
            # a channel whose request carries fewer recipients (SMS: one) plans rows that size
            batch_sizes={n: min(settings.email_batch_size, c.limits.batch_size)
                         for n, c in channels.items() if c.recipients is not None},
            addresses={n: c.address for n, c in channels.items() if c.recipients is not None},
        )
