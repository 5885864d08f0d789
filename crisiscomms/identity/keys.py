"""Approvers' signing keys (Ed25519): the private key in the user's own folder, the public key
listed in the workspace.

- **Private key**: ``crisiscomms keys init`` writes ``<keys_dir>/<id>.key`` (PKCS#8 PEM, mode
  600, folder 700), ``keys_dir`` being the setting of that name, by default
  ``~/.config/crisiscomms/keys``: the user's own folder, never the workspace (``keys init``
  refuses a folder inside it). One key per folder. A key file readable by anyone else is
  refused, as ssh does. The key is never printed or logged.
- **Public keys**: ``templates/_approvers/<id>.toml`` in the workspace (``id``,
  ``display_name``, ``public_key`` as base64 of the 32 raw bytes, ``may_sign``: which approval
  kinds the key may sign, ``os_user``: the account that registered it, ``created_at``). This
  folder is the trust root of every approval: review a change to it as you would review code
  (a CODEOWNERS rule on ``templates/_approvers/``).
- **Signatures** are over the canonical JSON of what is signed (:func:`canonical`: sorted keys,
  no spaces, UTF-8), base64-encoded; the verifier (:meth:`KeyRegistry.verify`) refuses a
  signature that does not verify, an id the registry does not list, and a kind the key may not
  sign (a ``provisional``-only key signing a ``final`` approval).

A person is one identity (:func:`current_identity`): the id of the registered key they hold;
without it at hand, the registered identity their OS account created; else the OS account.
``cryptography`` is imported inside the functions that need it, so importing this module is
cheap and has no side effect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from crisiscomms.core.errors import IdentityError
from crisiscomms.identity.identities import Identity, normalize_id, os_account

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from crisiscomms.core.settings import Settings

APPROVERS_DIR = "_approvers"
"""The folder of public keys inside ``templates/`` (``_``: never a playbook's name)."""
KEY_SUFFIX = ".key"
ApprovalKind = Literal["provisional", "final"]
KINDS: tuple[ApprovalKind, ...] = ("provisional", "final")
_KEY_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""A key's id is also a file name."""


_VERIFIED: set[bytes] = set()
"""sha256 of (public key, signature, signed bytes) of every signature verified in this process:
the same three verify the same way, so a lock read again (every trigger reads it) costs a hash
per entry, not an Ed25519 verification. Only successes are kept; a key removed from the
registry is refused before this is asked."""
_VERIFIED_MAX = 200_000


def canonical(payload: Mapping[str, object]) -> bytes:
    """The bytes that are signed: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def key_id(raw: str) -> str:
    """A key's identity id, which is also its file name."""
    value = normalize_id(raw)
    if not _KEY_ID.fullmatch(value):
        raise IdentityError(f"{raw!r} cannot name a key (lower-case letters, digits and ._- "
                            "only, at most 64)", field="id", values=(raw,))
    return value


@dataclass(frozen=True)
class ApproverKey:
    """One public key of the workspace's registry."""

    id: str
    display_name: str
    public_key: bytes
    may_sign: frozenset[str]
    created_at: str = ""
    os_user: str | None = None

    @property
    def fingerprint(self) -> str:
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.public_key).digest()).decode()[
            :43]

    def toml(self) -> str:
        lines = [
            "# A crisiscomms approver's public key (Ed25519). Every approval in approvals.lock",
            "# is signed by a key listed here: review changes to this folder like code.",
            f"id = {json.dumps(self.id)}",
            f"display_name = {json.dumps(self.display_name, ensure_ascii=False)}",
            f"public_key = {json.dumps(base64.b64encode(self.public_key).decode())}",
            f"may_sign = {json.dumps(sorted(self.may_sign))}",
            f"created_at = {json.dumps(self.created_at)}",
        ]
        if self.os_user:
            lines.append(f"os_user = {json.dumps(self.os_user)}")
        return "\n".join(lines) + "\n"


class SigningKey:
    """A private Ed25519 key and the identity id it signs for. Its repr shows no secret."""

    def __init__(self, identity_id: str, private: Ed25519PrivateKey,
                 path: Path | None = None) -> None:
        self.identity_id = key_id(identity_id)
        self._private = private
        self.path = path

    @property
    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, payload: Mapping[str, object]) -> str:
        return base64.b64encode(self._private.sign(canonical(payload))).decode()

    def __repr__(self) -> str:
        return f"SigningKey({self.identity_id!r}, path={self.path})"


def generate_key(identity_id: str) -> SigningKey:
    """A new key in memory only (``templates migrate`` signs with one and forgets it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return SigningKey(identity_id, Ed25519PrivateKey.generate())


def create_signing_key(keys_dir: Path, identity_id: str) -> SigningKey:
    """Write a new private key to ``keys_dir/<id>.key`` (folder 700, file 600, never
    overwritten)."""
    from cryptography.hazmat.primitives import serialization

    key = generate_key(identity_id)
    if load_signing_key(keys_dir) is not None:
        raise IdentityError(f"{keys_dir} already holds a signing key; one key per folder")
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys_dir.chmod(0o700)
    path = keys_dir / f"{key.identity_id}{KEY_SUFFIX}"
    pem = key._private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    key.path = path
    return key


def load_signing_key(keys_dir: Path) -> SigningKey | None:
    """The one private key in ``keys_dir`` (None when there is none)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not keys_dir.is_dir():
        return None
    found = sorted(p for p in keys_dir.iterdir() if p.suffix == KEY_SUFFIX and p.is_file())
    if not found:
        return None
    if len(found) > 1:
        raise IdentityError(f"{keys_dir} holds several keys ({', '.join(p.name for p in found)}); "
                            "keep one key per folder (or name another with "
                            "CRISISCOMMS_KEYS_DIR)", field="keys_dir")
    path = found[0]
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"the signing key {path} is readable by others (mode "
                            f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}", field="keys_dir")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise IdentityError(f"cannot read the signing key {path}: {type(exc).__name__}",
                            field="keys_dir") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise IdentityError(f"the signing key {path} is not an Ed25519 key", field="keys_dir")
    return SigningKey(path.stem, private, path)


class KeyRegistry:
    """The public keys a workspace lists (``templates/_approvers/*.toml``).

    A file that cannot be read or whose name differs from its ``id`` lists no key; the reason
    is kept in ``problems`` (``crisiscomms keys list`` shows it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems: dict[str, str] = {}
        self._keys: dict[str, ApproverKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                try:
                    entry = _read_entry(path)
                except IdentityError as exc:
                    self.problems[path.name] = str(exc)
                    continue
                self._keys[entry.id] = entry

    @classmethod
    def for_templates(cls, templates_dir: Path) -> KeyRegistry:
        return cls(templates_dir / APPROVERS_DIR)

    def get(self, identity_id: str) -> ApproverKey | None:
        try:
            return self._keys.get(normalize_id(identity_id))
        except IdentityError:
            return None

    def entries(self) -> list[ApproverKey]:
        return [self._keys[k] for k in sorted(self._keys)]

    def of_os_user(self, account: str) -> list[ApproverKey]:
        """The identities the OS account ``account`` registered."""
        return [k for k in self.entries() if k.os_user == account]

    def holds(self, key: SigningKey) -> ApproverKey | None:
        """The registry's entry for ``key`` if it lists exactly this public key."""
        listed = self._keys.get(key.identity_id)
        return listed if listed is not None and listed.public_key == key.public_key else None

    def verify(self, identity_id: str | None, payload: Mapping[str, object],
               signature: str | None, *, kind: str | None = None) -> str | None:
        """Why ``signature`` is not ``identity_id``'s signature of ``payload`` (None: it is),
        including a ``kind`` the key may not sign."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if not identity_id or not signature:
            return "it is not signed"
        listed = self.get(identity_id)
        if listed is None:
            return (f"it names {identity_id}, whose public key is not listed in "
                    f"{self.folder.name}/")
        if kind is not None and kind not in listed.may_sign:
            return f"{identity_id}'s key may not sign {kind} approvals"
        signed = canonical(payload)
        proof = hashlib.sha256(b"\0".join((listed.public_key, signature.encode(), signed)))
        if proof.digest() in _VERIFIED:
            return None
        public = self._public.get(listed.id)
        if public is None:
            public = self._public[listed.id] = Ed25519PublicKey.from_public_bytes(
                listed.public_key)
        try:
            public.verify(base64.b64decode(signature, validate=True), signed)
        except (InvalidSignature, binascii.Error, ValueError):
            return f"the signature is not {identity_id}'s signature of these fields"
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED.add(proof.digest())
        return None

    def register(self, entry: ApproverKey) -> Path:
        """List ``entry``'s public key (idempotent for the same key; a different key under a
        listed id is refused)."""
        listed = self._keys.get(entry.id)
        path = self.folder / f"{entry.id}.toml"
        if listed is not None:
            if listed.public_key != entry.public_key:
                raise IdentityError(f"{path} already lists another key for {entry.id}; a key "
                                    "is replaced by reviewing a change to that file, never "
                                    "silently", field="id", values=(entry.id,))
            return path
        if path.exists():
            raise IdentityError(f"{path} exists but cannot be read: {self.problems.get(path.name)}",
                                field="id", values=(entry.id,))
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(entry.toml(), encoding="utf-8")
        self._keys[entry.id] = entry
        return path


def _read_entry(path: Path) -> ApproverKey:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        identity_id = key_id(str(data["id"]))
        public = base64.b64decode(str(data["public_key"]), validate=True)
        may_sign = data.get("may_sign", list(KINDS))
        if not isinstance(may_sign, list) or not set(may_sign) <= set(KINDS):
            raise ValueError(f"may_sign must list some of {', '.join(KINDS)}")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, ValueError,
            binascii.Error) as exc:
        raise IdentityError(f"{path}: cannot read it: {exc}") from None
    if identity_id != path.stem:
        raise IdentityError(f"{path}: its id {identity_id!r} differs from its file name")
    if len(public) != 32:
        raise IdentityError(f"{path}: public_key is not a 32-byte Ed25519 key")
    return ApproverKey(identity_id, str(data.get("display_name") or identity_id), public,
                       frozenset(str(k) for k in may_sign), str(data.get("created_at", "")),
                       str(data["os_user"]) if data.get("os_user") else None)


def new_entry(key: SigningKey, display_name: str, *, may_sign: Iterable[str] = KINDS,
              os_user: str | None = None) -> ApproverKey:
    return ApproverKey(key.identity_id, display_name.strip() or key.identity_id, key.public_key,
                       frozenset(may_sign), datetime.now(UTC).isoformat(timespec="seconds"),
                       os_user)


def current_identity(settings: Settings, registry: KeyRegistry,
                     display_name: str | None = None) -> Identity:
    """Who is at this CLI: the id of the listed key they hold (``key``); else the identity
    their OS account registered (``os_user``: one person, one identity, key at hand or not);
    else the OS account itself. ``display_name`` (a typed ``--by``) is only shown."""
    typed = (display_name or "").strip() or None
    key = load_signing_key(settings.resolved_keys_dir)
    if key is not None:
        listed = registry.holds(key)
        if listed is not None:
            return Identity(listed.id, typed or listed.display_name, "key")
    account = os_account()
    mine = registry.of_os_user(account)
    if len(mine) > 1:
        raise IdentityError(f"the OS account {account} registered several identities in "
                            f"{registry.folder} ({', '.join(k.id for k in mine)}); act with "
                            "the key of one of them (CRISISCOMMS_KEYS_DIR)", field="identity",
                            values=tuple(k.id for k in mine))
    if mine:
        return Identity(mine[0].id, typed or mine[0].display_name, "os_user")
    return Identity(account, typed or account, "os_user")


def signing_key(settings: Settings, registry: KeyRegistry) -> tuple[SigningKey, ApproverKey]:
    """The private key of whoever is at this CLI, with its listing in this workspace; refused
    with what to run when there is none or it is not listed."""
    folder = settings.resolved_keys_dir
    key = load_signing_key(folder)
    if key is None:
        raise IdentityError(f"no signing key in {folder}: approvals are signed; run: "
                            "crisiscomms keys init", field="keys_dir")
    listed = registry.holds(key)
    if listed is None:
        other = registry.get(key.identity_id)
        why = ("lists another public key for it" if other is not None
               else "does not list it")
        raise IdentityError(f"your key {key.identity_id} ({key.path}) is not this workspace's: "
                            f"{registry.folder} {why}; run: crisiscomms keys init",
                            field="keys_dir", values=(key.identity_id,))
    return key, listed


def register_own_key(settings: Settings, registry: KeyRegistry, *, identity_id: str | None,
                     display_name: str | None, may_sign: Iterable[str] = KINDS
                     ) -> tuple[SigningKey, Path, bool]:
    """``crisiscomms keys init``: this user's key (created unless there is one) and its public
    key listed in the workspace. Returns the key, the listing's path and whether the key is
    new. Refuses a keys folder inside the workspace (a private key must not be committed)."""
    folder = settings.resolved_keys_dir
    if settings.workspace is not None and folder.resolve().is_relative_to(settings.workspace):
        raise IdentityError(f"the keys folder {folder} is inside the workspace "
                            f"{settings.workspace}: a private key must never be committed; "
                            "keep it in your own folder (CRISISCOMMS_KEYS_DIR)",
                            field="keys_dir")
    account = os_account()
    key = load_signing_key(folder)
    created = key is None
    if key is None:
        wanted = key_id(identity_id or account)
        if registry.get(wanted) is not None:
            raise IdentityError(f"{wanted} is already listed in {registry.folder} with another "
                                "key; use that person's own key, or another --id",
                                field="id", values=(wanted,))
        key = create_signing_key(folder, wanted)
    elif identity_id is not None and key_id(identity_id) != key.identity_id:
        raise IdentityError(f"{folder} already holds the key of {key.identity_id}, not "
                            f"{identity_id}; one key per folder (CRISISCOMMS_KEYS_DIR)",
                            field="id", values=(identity_id,))
    path = registry.register(new_entry(key, display_name or key.identity_id,
                                       may_sign=may_sign, os_user=account))
    return key, path, created
