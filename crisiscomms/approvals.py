"""Template approvals (``templates/approvals.lock``) and bundle approvals.

A template is approved by its content hash: editing it after approval makes it unapproved until
someone approves it again. A bundle approval covers the exact rendered content of one stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from crisiscomms.errors import ApprovalError

LOCK_NAME = "approvals.lock"
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
        if self.path.is_file():
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = {
                name: TemplateApproval(**entry) for name, entry in raw.get("templates", {}).items()
            }

    def template_names(self) -> list[str]:
        return sorted(
            p.relative_to(self.templates_dir).as_posix() for p in self.templates_dir.rglob("*.j2")
        )

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
            raise ApprovalError(
                f"template {name} is not approved; run: crisiscomms templates approve {name}"
            )
        if entry.sha256 != digest:
            raise ApprovalError(
                f"template {name} was edited after approval by {entry.approved_by} at "
                f"{entry.approved_at} (approved sha256 {entry.sha256[:12]}, now {digest[:12]}); "
                f"review it and run: crisiscomms templates approve {name}"
            )
        return digest

    def approve(self, names: Iterable[str], approver: str) -> list[str]:
        """Approve the current content of ``names``; returns those whose approval changed."""
        if not approver.strip():
            raise ApprovalError("an approval needs the approver's name")
        known = set(self.template_names())
        changed = []
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for name in names:
            if name not in known:
                raise ApprovalError(f"no template {name} under {self.templates_dir}")
            digest = self.source_hash(name)
            current = self.entries.get(name)
            if current is None or current.sha256 != digest:
                self.entries[name] = TemplateApproval(digest, approver, now)
                changed.append(name)
        if changed:
            self.save()
        return changed

    def save(self) -> None:
        payload = {
            "templates": {
                name: {
                    "sha256": e.sha256,
                    "approved_by": e.approved_by,
                    "approved_at": e.approved_at,
                }
                for name, e in sorted(self.entries.items())
            }
        }
        tmp = self.path.with_suffix(".lock.tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
