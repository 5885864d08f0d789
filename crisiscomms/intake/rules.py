"""What a signal means: the playbooks' ``intake:`` rules turn it into a stage to run.

The first rule that takes a signal wins (playbooks by name, each playbook's rules in order); a
signal of our own shape names its playbook, and only that playbook's rules are tried. The facts
are the rule's pre-approved words plus what the signal's labels and times say (components,
severity, ``started_at``, ``next_update_at``, ``resolved_at``); the alert's own summary is
never one of them. Facts our own events and recall feeds carry override the rule's (the rule
fills what they leave out). Organization, status page URL and the like are left to
``incident.service.trigger``'s defaults; the incident reference to ``service.accept``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crisiscomms.core.errors import PlaybookError
from crisiscomms.intake.contract import Signal, StageRequest
from crisiscomms.playbook.intake_rules import IntakeRule
from crisiscomms.playbook.loader import Playbook, available_playbooks, playbook_on_disk

log = logging.getLogger(__name__)


def route(signal: Signal, playbooks: Mapping[str, Playbook], *,
          now: datetime) -> StageRequest | None:
    """The stage ``signal`` runs, or None when no rule takes it (or its rule has nothing to do
    for it: a resolution without a resolve stage, a stage our event names that the playbook
    lacks)."""
    if signal.playbook is not None:
        book = playbooks.get(signal.playbook)
        candidates = [book] if book is not None else []
    else:
        candidates = [playbooks[name] for name in sorted(playbooks)]
    for book in candidates:
        for rule in book.intake.rules if book.intake else ():
            if rule.takes(signal.kind.value, signal.source, signal.labels):
                return stage_request(signal, book, rule, now=now)
    return None


def stage_request(signal: Signal, book: Playbook, rule: IntakeRule, *,
                  now: datetime) -> StageRequest | None:
    """What ``rule`` of ``book`` makes of ``signal`` (whether it takes it is
    :meth:`IntakeRule.takes`): None when there is no stage to run (a resolution without a
    resolve stage, a stage our event names that the playbook lacks)."""
    resolved = signal.status == "resolved"
    stage = signal.stage or (book.intake_resolve_stage(rule) if resolved
                             else book.intake_stage(rule))
    if stage is None or stage not in {s.id for s in book.stages}:
        return None
    return StageRequest(playbook=book.name, stage=stage, proposal=resolved,
                        facts=rule_facts(rule, signal, now=now), group_key=group_key(rule, signal),
                        rule=rule.name)


def rule_facts(rule: IntakeRule, signal: Signal, *, now: datetime) -> dict[str, Any]:
    """The facts ``rule`` makes of ``signal`` (JSON-ready: times as ISO strings)."""
    facts: dict[str, Any] = {k: v for k, v in rule.facts.items() if k != "translations"}
    translations: dict[str, dict[str, Any]] = {
        loc: dict(entries) for loc, entries in rule.facts.get("translations", {}).items()}
    if rule.components is not None:
        component = rule.components.component(signal.labels)
        if component is not None:
            facts["components"] = [component]
    facts["severity"] = rule.severity.severity(signal.labels)
    facts["started_at"] = signal.started_at.isoformat()
    if signal.status == "resolved":
        facts["resolved_at"] = (signal.ended_at or now).isoformat()
    elif rule.next_update_minutes is not None:
        facts["next_update_at"] = (now + timedelta(minutes=rule.next_update_minutes)).isoformat()
    for key, value in signal.facts.items():  # what our events and recall feeds say
        if key == "translations" and isinstance(value, Mapping):
            for loc, entries in value.items():
                if isinstance(entries, Mapping):
                    translations.setdefault(str(loc), {}).update(entries)
        else:
            facts[key] = value
    if translations:
        facts["translations"] = translations
    return facts


def group_key(rule: IntakeRule, signal: Signal) -> str | None:
    """One incident per distinct value of the rule's ``group_by`` labels (None: the sender's
    own group key)."""
    if not rule.group_by:
        return None
    values = ",".join(f"{label}={signal.labels.get(label, '')}" for label in rule.group_by)
    return f"{rule.name}:{values}"[:256]


def workspace_playbooks(playbooks_dir: Path) -> dict[str, Playbook]:
    """The workspace's playbooks that have an ``intake:`` section, each parsed once per version
    of its file: an edited playbook takes effect at the next call. A playbook that does not
    load is left out and logged by name (lint says why): one broken file must not stop the
    others' events."""
    books: dict[str, Playbook] = {}
    for name in available_playbooks(playbooks_dir):
        try:
            book = playbook_on_disk(name, playbooks_dir)
        except PlaybookError as exc:
            log.warning("intake: playbook %s does not load, its rules are skipped: %s", name,
                        exc.reason or "invalid")
            continue
        if book.intake is not None:
            books[name] = book
    return books


class WorkspaceRules:
    """:func:`workspace_playbooks` for a request path: read again at most every ``max_age_s``
    (listing and stat-ing the directory on every request cost the intake API a fifth of its
    time). An edited, added or removed playbook takes effect within ``max_age_s``."""

    def __init__(self, playbooks_dir: Path, *, max_age_s: float = 1.0) -> None:
        self.playbooks_dir, self.max_age_s = playbooks_dir, max_age_s
        self._books: dict[str, Playbook] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def current(self) -> dict[str, Playbook]:
        """The playbooks with intake rules, as of at most ``max_age_s`` ago (read-only)."""
        books, read_at = self._books, self._read_at
        if books is not None and time.monotonic() - read_at < self.max_age_s:
            return books
        with self._lock:  # one reader refreshes; the others take its answer
            if self._books is None or time.monotonic() - self._read_at >= self.max_age_s:
                self._books = workspace_playbooks(self.playbooks_dir)
                self._read_at = time.monotonic()
            return self._books
