"""Real approvers for tests: Ed25519 keys generated in the test's own folders and listed in the
workspace's ``templates/_approvers/``, as ``crisiscomms keys init`` does. Nothing of the engine
is replaced: the approvals these helpers write are signed and verified like any other."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from crisiscomms.identity.keys import (
    KINDS,
    ApprovalKind,
    KeyRegistry,
    SigningKey,
    create_signing_key,
    load_signing_key,
    new_entry,
)
from crisiscomms.render.approvals import ApprovalLock


def keys_dir(base: Path, identity_id: str) -> Path:
    """Where ``identity_id``'s private key lives in a test (its own folder, as in a home)."""
    return base / "keys" / identity_id


def make_key(base: Path, templates_dir: Path, identity_id: str, display_name: str | None = None,
             *, may_sign: Iterable[str] = KINDS) -> SigningKey:
    """``identity_id``'s key under ``base`` (created once), listed in ``templates_dir``."""
    folder = keys_dir(base, identity_id)
    key = load_signing_key(folder) or create_signing_key(folder, identity_id)
    KeyRegistry.for_templates(templates_dir).register(
        new_entry(key, display_name or identity_id, may_sign=may_sign))
    return key


def approve_all(templates_dir: Path, base: Path, *, kind: ApprovalKind = "final",
                names: Iterable[str] | None = None, author: str = "pat",
                approver: str = "dana", display_name: str = "Dana (PR lead)") -> None:
    """Every template (or ``names``) proposed by ``author`` and approved by ``approver``, both
    real identities with their own keys: good for production, two-person rule included."""
    lock = ApprovalLock(templates_dir)
    chosen = list(names) if names is not None else lock.template_names()
    lock.propose(chosen, make_key(base, templates_dir, author, "Pat (author)"))
    lock = ApprovalLock(templates_dir)
    lock.approve(chosen, make_key(base, templates_dir, approver, display_name), kind=kind)


def cli_approver(base: Path, identity_id: str = "dana",
                 display_name: str = "Dana (PR lead)") -> dict[str, str]:
    """The environment of a person with a signing key, for ``crisiscomms`` run by a test:
    ``crisiscomms keys init`` made the key in their own folder under ``base`` (outside the
    workspace) and listed it in the workspace the command runs in."""
    from typer.testing import CliRunner

    from crisiscomms.cli import app

    env = {"CRISISCOMMS_KEYS_DIR": str(keys_dir(base, identity_id))}
    made = CliRunner().invoke(app, ["keys", "init", "--id", identity_id, "--name", display_name],
                              env=env)
    assert made.exit_code == 0, made.output
    return env
