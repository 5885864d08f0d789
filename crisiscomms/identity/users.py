"""The dashboard's people: who may sign in, with which roles.

The users file (``Settings.dashboard_users_path``, by default ``<data_dir>/dashboard_users.toml``,
mode 600, never committed: the workspace's ``.gitignore`` leaves ``data/`` out) is written by
``crisiscomms users add``. One table per person::

    [users.alice]
    display_name = "Alice Martin"
    roles = ["pr_lead"]
    password_hash = "$argon2id$v=19$m=65536,t=3,p=4$..."   # a local user
    email = "alice@example.com"                            # an OIDC user (st.login)

- **Ids** are identity ids (:func:`~crisiscomms.identity.identities.normalize_id`): use the
  same id as the person's approver key (``crisiscomms keys init``) so that one person is one
  identity on the dashboard and at the CLI, which is what the two-person rule compares.
- **Local users** sign in with a password, hashed with Argon2id (argon2-cffi's defaults, the
  RFC 9106 second recommendation); an unknown id is checked against a dummy hash so the answer
  takes as long as for a known one.
- **OIDC users** (``st.login`` configured in ``.streamlit/secrets.toml``) are matched by their
  verified e-mail claim; a signed-in account the file does not list has no role and sees only
  the sign-in page.

Nothing is read at import; ``argon2`` is imported when a password is hashed or checked.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crisiscomms.core.errors import IdentityError
from crisiscomms.identity.identities import Identity, normalize_id
from crisiscomms.identity.roles import Permission, Role, parse_roles, permissions_of

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_PASSWORD_LENGTH = 12
"""NIST SP 800-63B asks for at least 8; a crisis tool's accounts approve public statements."""
USERS_FILE = "dashboard_users.toml"


@dataclass(frozen=True)
class DashboardUser:
    """A signed-in person: the identity the audit trail records and the roles they hold."""

    identity: Identity
    roles: frozenset[Role]

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions_of(self.roles)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class UserRecord:
    """One person in the users file (the hash is never shown)."""

    id: str
    display_name: str
    roles: frozenset[Role]
    password_hash: str | None = field(default=None, repr=False)
    email: str | None = None

    def user(self) -> DashboardUser:
        return DashboardUser(Identity(self.id, self.display_name, "dashboard"), self.roles)

    def toml(self) -> str:
        lines = [f"[users.{json.dumps(self.id)}]",
                 f"display_name = {json.dumps(self.display_name, ensure_ascii=False)}",
                 f"roles = {json.dumps(sorted(r.value for r in self.roles))}"]
        if self.password_hash:
            lines.append(f"password_hash = {json.dumps(self.password_hash)}")
        if self.email:
            lines.append(f"email = {json.dumps(self.email)}")
        return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("not a password: equalises the time of an unknown id")


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password``; refuses a short one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise IdentityError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
                            field="password")
    return _hasher().hash(password)


class UserStore:
    """The users file: read, check a password, add, change, remove.

    Writes replace the file atomically with mode 600; a file readable by others is refused,
    as ssh refuses a private key anyone can read."""

    def __init__(self, path: Path, records: Mapping[str, UserRecord] | None = None) -> None:
        self.path = path
        self.records: dict[str, UserRecord] = dict(records or {})

    @classmethod
    def load(cls, path: Path) -> UserStore:
        """The users in ``path`` (none when it does not exist yet)."""
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return cls(path)
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            raise IdentityError(f"{path} is readable by other users (mode "
                                f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}",
                                field="dashboard_users_path")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise IdentityError(f"{path}: not a users file: {exc}",
                                field="dashboard_users_path") from None
        records = {}
        for raw_id, entry in (data.get("users") or {}).items():
            record = _record(raw_id, entry, path)
            records[record.id] = record
        return cls(path, records)

    def get(self, user_id: str) -> UserRecord | None:
        try:
            return self.records.get(normalize_id(user_id))
        except IdentityError:
            return None

    def authenticate(self, user_id: str, password: str) -> DashboardUser | None:
        """The user when ``password`` is theirs, else None (an unknown id costs the same
        time). A user without roles cannot sign in."""
        from argon2.exceptions import InvalidHashError, VerificationError

        record = self.get(user_id)
        stored = record.password_hash if record is not None else None
        try:
            _hasher().verify(stored or _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        if record is None or stored is None or not record.roles:
            return None
        return record.user()

    def by_email(self, email: str | None, *, verified: bool) -> DashboardUser | None:
        """The OIDC account's user: its e-mail claim, only when the provider verified it."""
        if not email or not verified:
            return None
        wanted = email.strip().casefold()
        for record in self.records.values():
            if record.email and record.email.casefold() == wanted and record.roles:
                return record.user()
        return None

    def add(self, user_id: str, *, display_name: str | None, roles: Iterable[str],
            password: str | None = None, email: str | None = None) -> UserRecord:
        """A new person (refused when the id exists: use :meth:`update`)."""
        uid = normalize_id(user_id)
        if uid in self.records:
            raise IdentityError(f"user {uid} exists; change them with crisiscomms users set",
                                field="id", values=(uid,))
        parsed = parse_roles(roles)
        if not parsed:
            raise IdentityError("a user needs at least one role", field="roles")
        if password is None and email is None:
            raise IdentityError("a user needs a password (local sign-in) or an e-mail "
                                "(OIDC sign-in)", field="password")
        record = UserRecord(uid, (display_name or uid).strip() or uid, parsed,
                            hash_password(password) if password is not None else None,
                            email.strip() if email else None)
        self.records[uid] = record
        self.save()
        return record

    def update(self, user_id: str, *, roles: Iterable[str] | None = None,
               password: str | None = None, display_name: str | None = None) -> UserRecord:
        record = self._existing(user_id)
        if roles is not None:
            parsed = parse_roles(roles)
            if not parsed:
                raise IdentityError("a user needs at least one role", field="roles")
            record = replace(record, roles=parsed)
        if password is not None:
            record = replace(record, password_hash=hash_password(password))
        if display_name is not None:
            record = replace(record, display_name=display_name.strip() or record.id)
        self.records[record.id] = record
        self.save()
        return record

    def remove(self, user_id: str) -> None:
        del self.records[self._existing(user_id).id]
        self.save()

    def _existing(self, user_id: str) -> UserRecord:
        record = self.get(user_id)
        if record is None:
            raise IdentityError(f"no user {user_id!r} in {self.path}", field="id",
                                values=(user_id,))
        return record

    def save(self) -> None:
        """Replace the file atomically, mode 600."""
        text = ("# crisiscomms dashboard users (crisiscomms users add). Secret: mode 600, never "
                "commit it.\n\n" + "\n".join(r.toml() for r in sorted(
                    self.records.values(), key=lambda r: r.id)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


def _record(raw_id: str, entry: Any, path: Path) -> UserRecord:
    if not isinstance(entry, dict):
        raise IdentityError(f"{path}: users.{raw_id} is not a table", field="users")
    roles = entry.get("roles") or []
    if not isinstance(roles, list):
        raise IdentityError(f"{path}: users.{raw_id}.roles is not a list", field="roles")
    uid = normalize_id(raw_id)
    return UserRecord(uid, str(entry.get("display_name") or uid), parse_roles(map(str, roles)),
                      entry.get("password_hash") or None, entry.get("email") or None)
