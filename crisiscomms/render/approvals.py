"""Template approvals (``templates/approvals.lock``) and bundle approvals.

A template is approved by its content hash: editing it after approval makes it unapproved until
someone approves it again. A bundle approval covers the exact rendered content of one stage.

The approved text itself is kept, content-addressed, under ``templates/.approved/<sha256>.j2``,
so ``crisiscomms templates diff`` shows exactly what changed since approval. Templates of a
playbook with the two-person rule (``approvals: {required: 2}``) record their author (from
``crisiscomms templates propose --by NAME``, else the git author of an unmodified committed
file) and refuse approval by that author.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from crisiscomms.core.errors import ApprovalError

LOCK_NAME = "approvals.lock"
APPROVED_DIR = ".approved"
_COPY_NAME = re.compile(r"[0-9a-f]{64}\.j2")
"""An approved copy: ``<sha256>.j2``. Anything else under ``.approved/`` is not ours to remove."""
TemplateState = Literal["approved", "edited", "unapproved"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundle_hash(content_hashes: Iterable[str]) -> str:
    """One hash over every message of a bundle, independent of order."""
    return sha256_text("\n".join(sorted(content_hashes)))


@dataclass(frozen=True)
class TemplateApproval:
    sha256: str
    approved_by: str
    approved_at: str
    author: str | None = None


@dataclass(frozen=True)
class Proposal:
    sha256: str
    author: str
    proposed_at: str


@dataclass(frozen=True)
class Collected:
    """What ``templates gc`` removed (or, in a dry run, would remove)."""

    copies: tuple[Path, ...]
    bytes: int
    kept: int
    """Copies left, each one referred to by the lock."""


@dataclass(frozen=True)
class TemplateStatus:
    name: str
    state: TemplateState
    approval: TemplateApproval | None


class ApprovalLock:
    """The lock file: template name → content hash, approver and time."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.path = templates_dir / LOCK_NAME
        self.entries: dict[str, TemplateApproval] = {}
        self.proposals: dict[str, Proposal] = {}
        if self.path.is_file():
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = {
                name: TemplateApproval(**entry) for name, entry in raw.get("templates", {}).items()
            }
            self.proposals = {
                name: Proposal(**entry) for name, entry in raw.get("proposals", {}).items()
            }

    def template_names(self) -> list[str]:
        return sorted(
            rel.as_posix()
            for rel in (p.relative_to(self.templates_dir) for p in self.templates_dir.rglob("*.j2"))
            if not any(part.startswith(".") for part in rel.parts)
        )

    def _copy_path(self, sha: str) -> Path:
        return self.templates_dir / APPROVED_DIR / f"{sha}.j2"

    def _keep_copy(self, sha: str, text: str) -> None:
        path = self._copy_path(sha)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def approved_text(self, name: str) -> str | None:
        """The text as approved (None: never approved, or approved before copies were kept)."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        path = self._copy_path(entry.sha256)
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def diff(self, name: str) -> str:
        """A unified diff from the approved text to the current one ('' when unchanged)."""
        current = (self.templates_dir / name).read_text(encoding="utf-8")
        entry = self.entries.get(name)
        approved = self.approved_text(name)
        if entry is not None and approved is None:
            if entry.sha256 == sha256_text(current):
                return ""
            reason = (f"the approved text ({entry.sha256[:12]}) was not kept, so there is "
                      "nothing to compare with")
            raise ApprovalError(f"template {name}: {reason}", template=name, reason=reason)
        old = approved or ""
        label = (f"{name} (approved by {entry.approved_by} at {entry.approved_at})"
                 if entry else f"{name} (never approved)")
        return "".join(difflib.unified_diff(
            old.splitlines(keepends=True), current.splitlines(keepends=True),
            fromfile=label, tofile=f"{name} (now)"))

    def author(self, name: str) -> str | None:
        """Who wrote the current content: a proposal of exactly it, else the git author of
        the last commit of an unmodified file."""
        proposal = self.proposals.get(name)
        if proposal is not None and proposal.sha256 == self.source_hash(name):
            return proposal.author
        return _git_author(self.templates_dir, name)

    def propose(self, names: Iterable[str], author: str) -> list[str]:
        """Record ``author`` as the author of the current content of ``names``."""
        if not author.strip():
            raise ApprovalError("a proposal needs the author's name", field="author")
        known = set(self.template_names())
        now = datetime.now(UTC).isoformat(timespec="seconds")
        out = []
        for name in names:
            if name not in known:
                raise ApprovalError(f"no template {name} under {self.templates_dir}",
                                    template=name, reason="no such template")
            self.proposals[name] = Proposal(self.source_hash(name), author.strip(), now)
            out.append(name)
        self.save()
        return out

    def source_hash(self, name: str) -> str:
        return sha256_text((self.templates_dir / name).read_text(encoding="utf-8"))

    def status(self, name: str) -> TemplateStatus:
        entry = self.entries.get(name)
        if entry is None:
            return TemplateStatus(name, "unapproved", None)
        state: TemplateState = "approved" if entry.sha256 == self.source_hash(name) else "edited"
        return TemplateStatus(name, state, entry)

    def check(self, name: str, source: str) -> str:
        """The source's hash if it is the approved one, else an ApprovalError naming the file."""
        digest = sha256_text(source)
        entry = self.entries.get(name)
        if entry is None:
            reason = f"not approved; run: crisiscomms templates approve {name}"
            raise ApprovalError(f"template {name} is {reason}", template=name, reason=reason)
        if entry.sha256 != digest:
            reason = (f"edited after approval by {entry.approved_by} at {entry.approved_at} "
                      f"(approved sha256 {entry.sha256[:12]}, now {digest[:12]}); review it and "
                      f"run: crisiscomms templates approve {name}")
            raise ApprovalError(f"template {name} was {reason}", template=name, reason=reason)
        return digest

    def approve(self, names: Iterable[str], approver: str, *,
                two_person: Callable[[str], bool] = lambda name: False) -> list[str]:
        """Approve the current content of ``names``; returns those whose approval changed.

        ``two_person(name)`` says whether the template falls under the two-person rule: then
        its author must be known and must not be ``approver``. Nothing changes on a refusal."""
        if not approver.strip():
            raise ApprovalError("an approval needs the approver's name", field="approver")
        known = set(self.template_names())
        updates: dict[str, TemplateApproval] = {}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for name in names:
            if name not in known:
                raise ApprovalError(f"no template {name} under {self.templates_dir}",
                                    template=name, reason="no such template")
            digest = self.source_hash(name)
            current = self.entries.get(name)
            if current is not None and current.sha256 == digest:
                self._keep_copy(digest, (self.templates_dir / name).read_text(encoding="utf-8"))
                continue
            author = self.author(name)
            if two_person(name):
                if author is None:
                    reason = ("needs two people and its author is unknown; run: crisiscomms "
                              f"templates propose --by AUTHOR {name}")
                    raise ApprovalError(f"template {name} {reason}", template=name,
                                        reason=reason)
                if author.strip().casefold() == approver.strip().casefold():
                    reason = (f"needs two people: {approver} wrote this change and cannot "
                              "approve it")
                    raise ApprovalError(f"template {name} {reason}", template=name,
                                        field="approver", reason=reason)
            updates[name] = TemplateApproval(digest, approver, now, author)
        for name, entry in updates.items():
            self._keep_copy(entry.sha256, (self.templates_dir / name).read_text(encoding="utf-8"))
            self.entries[name] = entry
            self.proposals.pop(name, None)
        if updates:
            self.save()
        return list(updates)

    def referenced(self) -> set[str]:
        """Content hashes the lock refers to: every approval and every proposal."""
        return ({e.sha256 for e in self.entries.values()}
                | {p.sha256 for p in self.proposals.values()})

    def unreferenced_copies(self) -> list[Path]:
        """Approved copies (``.approved/<sha256>.j2``) that no lock entry refers to any more:
        left by templates approved again after an edit, or removed."""
        folder = self.templates_dir / APPROVED_DIR
        if not folder.is_dir():
            return []
        referenced = self.referenced()
        return sorted(
            path for path in folder.iterdir()
            if _COPY_NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink()
            and path.name.removesuffix(".j2") not in referenced
        )

    def collect_garbage(self, *, dry_run: bool = False) -> Collected:
        """Remove the approved copies no lock entry refers to (``crisiscomms templates gc``).

        The lock is read again from disk first, and each copy is checked against it just
        before it goes, so a copy the lock refers to is never removed, whatever this object
        held. Without a lock file nothing is removed: every copy would look unreferenced."""
        if not self.path.is_file():
            raise ApprovalError(f"no {LOCK_NAME} under {self.templates_dir}: without it every "
                                "approved copy looks unreferenced, so none is removed")
        fresh = ApprovalLock(self.templates_dir)
        candidates = fresh.unreferenced_copies()
        sizes = {path: path.stat().st_size for path in candidates}
        removed: list[Path] = []
        if dry_run:
            removed = candidates
        else:
            referenced = ApprovalLock(self.templates_dir).referenced()
            for path in candidates:
                if path.name.removesuffix(".j2") in referenced:
                    continue
                path.unlink(missing_ok=True)
                removed.append(path)
        folder = self.templates_dir / APPROVED_DIR
        left = (sum(1 for p in folder.iterdir() if _COPY_NAME.fullmatch(p.name))
                if folder.is_dir() else 0)
        return Collected(tuple(removed), sum(sizes[p] for p in removed),
                         left - (len(removed) if dry_run else 0))

    def save(self) -> None:
        payload: dict[str, object] = {
            "templates": {
                name: {
                    "sha256": e.sha256,
                    "approved_by": e.approved_by,
                    "approved_at": e.approved_at,
                    **({"author": e.author} if e.author else {}),
                }
                for name, e in sorted(self.entries.items())
            }
        }
        if self.proposals:
            payload["proposals"] = {
                name: {"sha256": p.sha256, "author": p.author, "proposed_at": p.proposed_at}
                for name, p in sorted(self.proposals.items())
            }
        tmp = self.path.with_suffix(".lock.tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _git_author(root: Path, name: str) -> str | None:
    """The author of the last commit of ``name`` if the file is committed and unmodified."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", name], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout
        if dirty.strip():
            return None
        author = subprocess.run(["git", "log", "-1", "--format=%an", "--", name], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return author.strip() or None


def two_person_rule(playbooks_dir: Path) -> Callable[[str], bool]:
    """Whether a template (``<playbook>/...``) belongs to a playbook that needs two people."""
    from crisiscomms.core.errors import PlaybookError
    from crisiscomms.playbook.loader import available_playbooks, load_playbook

    strict = set()
    for name in available_playbooks(playbooks_dir):
        try:
            if load_playbook(name, playbooks_dir).approvals.required >= 2:
                strict.add(name)
        except PlaybookError:
            continue
    return lambda template: template.split("/", 1)[0] in strict
