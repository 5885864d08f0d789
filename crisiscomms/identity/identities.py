"""Who is acting: an authenticated identity, never a typed name.

An :class:`Identity` has three things:

- ``id``: stable and authenticated; the only thing the two-person rule compares;
- ``display_name``: what a person typed (``--by``) or registered; shown, never compared;
- ``method``: how the id was established.

Methods:

- ``os_user``: the CLI without a signing key: the operating-system account of the process,
  read from its real uid (:func:`os_account`, ``pwd``), never from ``$USER`` or ``$LOGNAME``,
  which anyone can set. If that account registered a signing key in this workspace
  (``crisiscomms keys init``), the identity is that key's id even when the key is not at hand,
  so one person is one identity whether or not they hold their key
  (:func:`crisiscomms.identity.keys.current_identity`);
- ``key``: the CLI holding a private signing key whose public key the workspace lists
  (``templates/_approvers/<id>.toml``);
- ``dashboard``: the dashboard's signed-in user; ``api_key``: an API key's owner. The dashboard
  and the API build these with the same ids as the approvers registry, so a person who signs in
  on the dashboard is the same identity as at the CLI;
- ``system``: the engine itself and a drill's synthetic people (the ``auto_send`` policy, the
  drill approvers); never a person at the CLI.

Ids are lower-case with no spaces (:func:`normalize_id`). Nothing here reads the environment or
touches a file at import.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from typing import Literal

from crisiscomms.core.errors import IdentityError

AuthMethod = Literal["os_user", "key", "dashboard", "api_key", "system"]
_ID = re.compile(r"[a-z0-9][a-z0-9._@+:|-]{0,127}")
"""An identity id: an OS account, a key id, an OIDC subject (``auth0|123``), an e-mail."""


@dataclass(frozen=True)
class Identity:
    """Who is acting: ``id`` is compared, ``display_name`` only shown."""

    id: str
    display_name: str
    method: AuthMethod

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", normalize_id(self.id))
        object.__setattr__(self, "display_name", self.display_name.strip() or self.id)

    def same_as(self, other: Identity | str) -> bool:
        """Whether ``other`` is this identity (an id string is normalised first)."""
        other_id = other.id if isinstance(other, Identity) else normalize_id(other)
        return self.id == other_id

    def __str__(self) -> str:
        return self.id if self.display_name == self.id else f"{self.display_name} [{self.id}]"


def normalize_id(raw: str) -> str:
    """The canonical form of an identity id (lower case, no surrounding space); refuses one
    with spaces or odd characters, which would be a typed name rather than an id."""
    value = raw.strip().casefold()
    if not _ID.fullmatch(value):
        raise IdentityError(f"{raw!r} is not an identity id (lower-case letters, digits and "
                            "._@+:|- only, no spaces)", field="identity", values=(raw,))
    return value


def os_account() -> str:
    """The operating-system account of this process, from its real uid (``pwd``), so neither
    ``$USER`` nor ``$LOGNAME`` can change it. Where ``pwd`` does not exist (Windows), the
    login name the system reports."""
    try:
        import pwd
    except ImportError:  # pragma: no cover - not POSIX
        return getpass.getuser()
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return f"uid{os.getuid()}"


def os_identity(display_name: str | None = None) -> Identity:
    """The OS account as an identity, the typed name kept for display only."""
    account = os_account()
    return Identity(account, display_name or account, "os_user")


def system_identity(identity_id: str, display_name: str | None = None) -> Identity:
    """The engine or a drill acting (``auto_send`` policy, drill approvers): never a person."""
    return Identity(identity_id, display_name or identity_id, "system")
