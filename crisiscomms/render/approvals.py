"""Template approvals (``templates/approvals.lock``) and bundle approvals.

A template is approved by its content hash: editing it after approval makes it unapproved until
someone approves it again. A bundle approval covers the exact rendered content of one stage.

The approved text itself is kept, content-addressed, under ``templates/.approved/<sha256>.j2``,
so ``crisiscomms templates diff`` shows exactly what changed since approval.

**Who approved, and how far.** Each lock entry records the sha256, the approver's identity id
(``approver``: compared) and display name (``approved_by``: shown, whatever was typed), the
time, the kind (``provisional``: good for drills; ``final``: good for production) and, when
its author proposed it (``crisiscomms templates propose``), the author's id, name, time and
signature. The approver signs all of it with their Ed25519 key
(:mod:`crisiscomms.identity.keys`; public keys in ``templates/_approvers/``). An entry whose
signature does not verify against a listed key, whose key may not sign its kind, or whose
fields were edited after signing is refused on load and before every use:
``ApprovalError(template=..., reason="lock entry for ... does not verify: hand-edited? ...")``;
its state is ``invalid``. A lock from before signatures (no ``"format": 2``) is refused the same
way until ``crisiscomms templates migrate`` carries its entries over as provisional ones.

**Two-person rule** (a playbook's ``approvals: {required: 2}``): the author of a change is the
identity that signed its proposal, never a typed name (nor a git author, which is typed
configuration); the approver must be another identity, and an author must be known. A final
approval of such a template must carry its author's valid signature and name another approver
(:meth:`ApprovalLock.sign_off`), so one person's key cannot make a template production-ready
alone, even by writing the lock with a script.

**Production** sends only final approvals (``Settings.mode``; the incident service asks
:meth:`ApprovalLock.needs_sign_off`); drills may use provisional ones.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from crisiscomms.core.errors import ApprovalError, IdentityError
from crisiscomms.identity.keys import (
    KINDS,
    ApprovalKind,
    KeyRegistry,
    SigningKey,
)

LOCK_NAME = "approvals.lock"
APPROVED_DIR = ".approved"
LOCK_FORMAT = 2
"""``"format"`` of a lock with signed entries; a lock without it is from before signatures."""
_COPY_NAME = re.compile(r"[0-9a-f]{64}\.j2")
"""An approved copy: ``<sha256>.j2``. Anything else under ``.approved/`` is not ours to remove."""
TemplateState = Literal["approved", "edited", "unapproved", "invalid"]
"""``invalid``: the lock entry does not verify (hand-edited, unsigned, unknown key)."""
TwoPerson = Callable[[str], bool]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundle_hash(content_hashes: Iterable[str]) -> str:
    """One hash over every message of a bundle, independent of order."""
    return sha256_text("\n".join(sorted(content_hashes)))


@dataclass(frozen=True)
class TemplateApproval:
    """One lock entry. ``approver`` and ``author_id`` are identity ids (compared);
    ``approved_by`` and ``author`` are display names (shown, never compared)."""

    sha256: str
    approved_by: str
    approved_at: str
    author: str | None = None
    approver: str = ""
    kind: str = ""
    signature: str = ""
    author_id: str | None = None
    proposed_at: str | None = None
    author_signature: str | None = None

    @property
    def final(self) -> bool:
        return self.kind == "final"

    def who(self) -> str:
        """``Dana (PR lead) [dana]``: the name shown, with the identity that signed."""
        return (self.approved_by if not self.approver or self.approved_by == self.approver
                else f"{self.approved_by} [{self.approver}]")

    def payload(self, name: str) -> dict[str, object]:
        """What the approver signs: every field but the signature, and the template's name."""
        return {"purpose": "template approval", "v": LOCK_FORMAT, "template": name,
                "sha256": self.sha256, "approver": self.approver,
                "approved_by": self.approved_by, "approved_at": self.approved_at,
                "kind": self.kind, "author": self.author, "author_id": self.author_id,
                "proposed_at": self.proposed_at, "author_signature": self.author_signature}

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in (
            ("sha256", self.sha256), ("approved_by", self.approved_by),
            ("approved_at", self.approved_at), ("approver", self.approver),
            ("kind", self.kind), ("signature", self.signature), ("author", self.author),
            ("author_id", self.author_id), ("proposed_at", self.proposed_at),
            ("author_signature", self.author_signature)) if v}


@dataclass(frozen=True)
class Proposal:
    """Who wrote a change: ``author_id`` signed it; ``author`` is the name shown."""

    sha256: str
    author: str
    proposed_at: str
    author_id: str = ""
    signature: str = ""

    def payload(self, name: str) -> dict[str, object]:
        return proposal_payload(name, self.sha256, self.author_id, self.author,
                                self.proposed_at)


def proposal_payload(name: str, sha: str, author_id: str | None, author: str | None,
                     proposed_at: str | None) -> dict[str, object]:
    """What an author signs when proposing a change."""
    return {"purpose": "template proposal", "v": LOCK_FORMAT, "template": name, "sha256": sha,
            "author_id": author_id, "author": author, "proposed_at": proposed_at}


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
    reason: str | None = None
    """Why the state is ``invalid``."""

    @property
    def kind(self) -> str | None:
        """``final`` or ``provisional`` for an approved template, else None."""
        return self.approval.kind if self.state == "approved" and self.approval else None

    @property
    def label(self) -> str:
        """What ``templates status`` shows: final, provisional, edited, unapproved, invalid."""
        return self.kind or self.state


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _entry(raw: Any) -> TemplateApproval:
    data = raw if isinstance(raw, Mapping) else {}
    return TemplateApproval(
        sha256=str(data.get("sha256", "")), approved_by=str(data.get("approved_by", "")),
        approved_at=str(data.get("approved_at", "")), author=_text(data.get("author")),
        approver=str(data.get("approver", "")), kind=str(data.get("kind", "")),
        signature=str(data.get("signature", "")), author_id=_text(data.get("author_id")),
        proposed_at=_text(data.get("proposed_at")),
        author_signature=_text(data.get("author_signature")))


def _proposal(raw: Any) -> Proposal:
    data = raw if isinstance(raw, Mapping) else {}
    return Proposal(str(data.get("sha256", "")), str(data.get("author", "")),
                    str(data.get("proposed_at", "")), str(data.get("author_id", "")),
                    str(data.get("signature", "")))


@dataclass(frozen=True)
class _Author:
    id: str
    name: str
    proposed_at: str
    signature: str


class ApprovalLock:
    """The lock file: template name → content hash, approver identity, kind, time, signature.

    Every entry is verified against the workspace's public keys (``templates/_approvers/``)
    when the lock is read, and again before each use (:meth:`status`, :meth:`check`)."""

    def __init__(self, templates_dir: Path, registry: KeyRegistry | None = None) -> None:
        self.templates_dir = templates_dir
        self.path = templates_dir / LOCK_NAME
        self.registry = registry or KeyRegistry.for_templates(templates_dir)
        self.entries: dict[str, TemplateApproval] = {}
        self.proposals: dict[str, Proposal] = {}
        self.format: int | None = None
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ApprovalError(f"{self.path}: cannot read it: {exc}; restore it from "
                                    "version control", field=LOCK_NAME) from None
            self.format = raw.get("format") if isinstance(raw.get("format"), int) else None
            self.entries = {str(n): _entry(e) for n, e in dict(raw.get("templates", {})).items()}
            self.proposals = {str(n): _proposal(p)
                              for n, p in dict(raw.get("proposals", {})).items()}
        self.invalid: dict[str, str] = {
            name: reason for name, entry in self.entries.items()
            if (reason := self._verify(name, entry)) is not None}
        """Entries refused on load: template name → why (``lock entry for ... does not
        verify: hand-edited? ...``)."""

    # -- verification ------------------------------------------------------------------------

    @property
    def legacy(self) -> bool:
        """A lock written before approvals were signed (``templates migrate`` converts it)."""
        return self.path.is_file() and self.format is None and bool(self.entries)

    def _verify(self, name: str, entry: TemplateApproval) -> str | None:
        """Why ``entry`` cannot be trusted (None: it verifies)."""
        detail: str | None
        if self.format is None:
            detail = ("it was written before approvals were signed; run: crisiscomms "
                      "templates migrate")
        elif self.format != LOCK_FORMAT:
            detail = f"the lock's format is {self.format}, this crisiscomms reads {LOCK_FORMAT}"
        elif entry.kind not in KINDS:
            detail = f"its kind {entry.kind!r} is neither provisional nor final"
        else:
            detail = self.registry.verify(entry.approver, entry.payload(name), entry.signature,
                                          kind=entry.kind)
            if detail is None and (entry.author_id or entry.author_signature):
                author = self.registry.verify(
                    entry.author_id, proposal_payload(name, entry.sha256, entry.author_id,
                                                      entry.author, entry.proposed_at),
                    entry.author_signature)
                detail = None if author is None else f"its author's signature: {author}"
        if detail is None:
            return None
        return f"lock entry for {name} does not verify: hand-edited? ({detail})"

    def _refuse_invalid(self, name: str, reason: str) -> ApprovalError:
        full = (f"{reason}; review the template (crisiscomms templates diff {name}) and "
                f"approve it again, or restore {LOCK_NAME} from version control")
        return ApprovalError(f"template {name}: {full}", template=name, reason=full)

    def _proposal_author(self, name: str, sha: str) -> _Author | None:
        proposal = self.proposals.get(name)
        if proposal is None or proposal.sha256 != sha:
            return None
        if self.registry.verify(proposal.author_id, proposal.payload(name),
                                proposal.signature) is not None:
            return None
        return _Author(proposal.author_id, proposal.author, proposal.proposed_at,
                       proposal.signature)

    def _author_of(self, name: str, sha: str) -> _Author | None:
        """Who wrote ``sha`` of ``name``: a verified proposal of it, else the verified author
        carried by a valid entry of the same content."""
        found = self._proposal_author(name, sha)
        if found is not None:
            return found
        entry = self.entries.get(name)
        if (entry is not None and entry.sha256 == sha and entry.author_id
                and entry.author_signature and entry.proposed_at
                and self._verify(name, entry) is None):
            return _Author(entry.author_id, entry.author or entry.author_id, entry.proposed_at,
                           entry.author_signature)
        return None

    # -- reading -----------------------------------------------------------------------------

    def template_names(self) -> list[str]:
        return sorted(
            rel.as_posix()
            for rel in (p.relative_to(self.templates_dir) for p in self.templates_dir.rglob("*.j2"))
            if not any(part.startswith(".") for part in rel.parts)
        )

    def known(self, names: Iterable[str]) -> list[str]:
        """``names``, each a template of this folder, else an ApprovalError naming it."""
        known = set(self.template_names())
        chosen = list(names)
        for name in chosen:
            if name not in known:
                raise ApprovalError(f"no template {name} under {self.templates_dir}",
                                    template=name, reason="no such template")
        return chosen

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
        label = (f"{name} (approved by {entry.who()} at {entry.approved_at}, "
                 f"{entry.kind or 'unsigned'})" if entry else f"{name} (never approved)")
        return "".join(difflib.unified_diff(
            old.splitlines(keepends=True), current.splitlines(keepends=True),
            fromfile=label, tofile=f"{name} (now)"))

    def author(self, name: str) -> str | None:
        """The identity id of whoever wrote the current content: the signed proposal of
        exactly it, or the signed author its valid approval carries (never a typed or git
        name)."""
        found = self._author_of(name, self.source_hash(name))
        return found.id if found else None

    def source_hash(self, name: str) -> str:
        return sha256_text((self.templates_dir / name).read_text(encoding="utf-8"))

    def status(self, name: str) -> TemplateStatus:
        entry = self.entries.get(name)
        if entry is None:
            return TemplateStatus(name, "unapproved", None)
        reason = self._verify(name, entry)
        if reason is not None:
            return TemplateStatus(name, "invalid", entry, reason)
        state: TemplateState = "approved" if entry.sha256 == self.source_hash(name) else "edited"
        return TemplateStatus(name, state, entry)

    def check(self, name: str, source: str) -> str:
        """The source's hash if it is the approved one (provisional or final) and its lock entry
        verifies, else an ApprovalError naming the file. Production asks
        :meth:`needs_sign_off` besides."""
        digest = sha256_text(source)
        entry = self.entries.get(name)
        if entry is None:
            reason = f"not approved; run: crisiscomms templates approve {name}"
            raise ApprovalError(f"template {name} is {reason}", template=name, reason=reason)
        invalid = self._verify(name, entry)
        if invalid is not None:
            raise self._refuse_invalid(name, invalid)
        if entry.sha256 != digest:
            reason = (f"edited after approval by {entry.who()} at {entry.approved_at} "
                      f"(approved sha256 {entry.sha256[:12]}, now {digest[:12]}); review it and "
                      f"run: crisiscomms templates approve {name}")
            raise ApprovalError(f"template {name} was {reason}", template=name, reason=reason)
        return digest

    def sign_off(self, name: str, *, two_person: bool = False,
                 sha: str | None = None) -> str | None:
        """Why ``name`` may not go out in production (None: it may): not approved, invalid,
        edited, only provisional, or (two-person rule) final without another identity as its
        signed author. ``sha``: the content that was rendered (default: the file now)."""
        entry = self.entries.get(name)
        if entry is None:
            return "not approved"
        invalid = self._verify(name, entry)
        if invalid is not None:
            return invalid
        if entry.sha256 != (sha or self.source_hash(name)):
            return (f"its approval (by {entry.who()} at {entry.approved_at}) is of other "
                    "content")
        if not entry.final:
            return (f"only provisionally approved (by {entry.who()} at {entry.approved_at}); "
                    "needs final sign-off: crisiscomms templates approve --final")
        if two_person and (not entry.author_id or entry.author_id == entry.approver):
            return (f"final, but the playbook needs two people and {entry.who()} approved it "
                    "with no signed proposal by another identity")
        return None

    def needs_sign_off(self, names: Iterable[str], two_person: TwoPerson | bool = False,
                       hashes: Mapping[str, str] | None = None) -> dict[str, str]:
        """Template → why it may not go out in production, for each of ``names`` that may
        not. ``hashes``: the content each was rendered from (default: the files now)."""
        rule = two_person if callable(two_person) else (lambda name: bool(two_person))
        out = {}
        for name in sorted(set(names)):
            why = self.sign_off(name, two_person=rule(name),
                                sha=(hashes or {}).get(name))
            if why is not None:
                out[name] = why
        return out

    # -- writing -----------------------------------------------------------------------------

    def _signer_listing(self, signer: SigningKey, kind: str) -> str:
        listed = self.registry.holds(signer)
        if listed is None:  # listed since this lock was read?
            self.registry = KeyRegistry(self.registry.folder)
            listed = self.registry.holds(signer)
        if listed is None:
            raise IdentityError(
                f"the key of {signer.identity_id} is not listed in {self.registry.folder}; "
                "run: crisiscomms keys init", field="keys_dir", values=(signer.identity_id,))
        if kind not in listed.may_sign:
            raise IdentityError(f"{listed.id}'s key may not sign {kind} approvals (its listing "
                                f"allows: {', '.join(sorted(listed.may_sign))})", field="kind",
                                values=(kind,))
        return listed.display_name

    def _refuse_legacy(self) -> None:
        if self.legacy:
            raise ApprovalError(f"{self.path} is from before approvals were signed: carry its "
                                "entries over first with: crisiscomms templates migrate",
                                field=LOCK_NAME)

    def propose(self, names: Iterable[str], signer: SigningKey,
                display_name: str | None = None) -> list[str]:
        """Record ``signer``'s identity, signed, as the author of the current content of
        ``names`` (``display_name``: the name shown)."""
        self._refuse_legacy()
        registered = self._signer_listing(signer, "provisional")
        shown = (display_name or "").strip() or registered
        now = _now()
        updates = {}
        for name in self.known(names):
            sha = self.source_hash(name)
            signature = signer.sign(proposal_payload(name, sha, signer.identity_id, shown, now))
            updates[name] = Proposal(sha, shown, now, signer.identity_id, signature)
        self.proposals.update(updates)
        self.save()
        return list(updates)

    def approve(self, names: Iterable[str], signer: SigningKey, *,
                display_name: str | None = None, kind: ApprovalKind = "provisional",
                two_person: TwoPerson = lambda name: False) -> list[str]:
        """Approve the current content of ``names`` as ``kind``, signed by ``signer`` (whose
        public key the workspace lists); returns those whose approval changed.

        An approval of the same content stays unless this one is final and it was not. Under
        the two-person rule (``two_person(name)``) the author, the identity that signed the
        proposal, must be known and must not be the signer, whatever names were typed.
        Nothing changes on a refusal."""
        if kind not in KINDS:
            raise ApprovalError(f"an approval is provisional or final, not {kind!r}",
                                field="kind", values=(str(kind),))
        self._refuse_legacy()
        registered = self._signer_listing(signer, kind)
        shown = (display_name or "").strip() or registered
        updates: dict[str, TemplateApproval] = {}
        now = _now()
        for name in self.known(names):
            digest = self.source_hash(name)
            current = self.entries.get(name)
            if (current is not None and current.sha256 == digest
                    and self._verify(name, current) is None
                    and (current.final or kind == "provisional")):
                self._keep_copy(digest, (self.templates_dir / name).read_text(encoding="utf-8"))
                continue
            author = self._author_of(name, digest)
            if two_person(name):
                if author is None:
                    reason = ("needs two people and its author is unknown: the author signs "
                              f"the change first with: crisiscomms templates propose {name}")
                    raise ApprovalError(f"template {name} {reason}", template=name,
                                        field="approver", reason=reason)
                if author.id == signer.identity_id:
                    reason = (f"needs two people: identity {author.id} proposed this change "
                              f"(as {author.name!r}) and cannot approve it (as {shown!r}); "
                              "names are only for display")
                    raise ApprovalError(f"template {name} {reason}", template=name,
                                        field="approver", reason=reason)
            entry = TemplateApproval(
                digest, shown, now, author.name if author else None, signer.identity_id, kind,
                "", author.id if author else None, author.proposed_at if author else None,
                author.signature if author else None)
            updates[name] = replace(entry, signature=signer.sign(entry.payload(name)))
        for name, entry in updates.items():
            self._keep_copy(entry.sha256, (self.templates_dir / name).read_text(encoding="utf-8"))
            self.entries[name] = entry
            self.invalid.pop(name, None)
            self.proposals.pop(name, None)
        if updates:
            self.save()
        return list(updates)

    def migrate(self, signer: SigningKey) -> list[str]:
        """Carry the entries of a lock from before signatures over as **provisional** entries
        signed by ``signer`` (``crisiscomms templates migrate``), keeping each one's hash,
        time and the names it showed. A typed name proves nothing, so none of them can be
        final; their unsigned proposals are dropped. Refused for a lock that is already
        signed: an unsigned entry there was hand-edited."""
        if not self.legacy:
            raise ApprovalError(f"{self.path} is not a lock from before signatures (nothing to "
                                "migrate); an entry that does not verify in a signed lock was "
                                "hand-edited: approve that template again instead",
                                field=LOCK_NAME)
        self._signer_listing(signer, "provisional")
        migrated = {}
        for name, old in sorted(self.entries.items()):
            entry = TemplateApproval(old.sha256, old.approved_by or signer.identity_id,
                                     old.approved_at or _now(), old.author, signer.identity_id,
                                     "provisional")
            migrated[name] = replace(entry, signature=signer.sign(entry.payload(name)))
        self.format = LOCK_FORMAT
        self.entries = migrated
        self.proposals = {}
        self.invalid = {n: r for n, e in migrated.items() if (r := self._verify(n, e))}
        self.save()
        return list(migrated)

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
            "format": LOCK_FORMAT,
            "templates": {name: e.as_json() for name, e in sorted(self.entries.items())},
        }
        if self.proposals:
            payload["proposals"] = {
                name: {"sha256": p.sha256, "author": p.author, "proposed_at": p.proposed_at,
                       "author_id": p.author_id, "signature": p.signature}
                for name, p in sorted(self.proposals.items())
            }
        tmp = self.path.with_suffix(".lock.tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        self.format = LOCK_FORMAT


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
