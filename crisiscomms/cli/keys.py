"""Approvers' signing keys: ``keys init`` (your key, listed in the workspace), ``keys list``,
``keys whoami``.

The private key stays in your own folder (``CRISISCOMMS_KEYS_DIR``, default
``~/.config/crisiscomms/keys``, mode 600) and is never printed; the public key goes to
``templates/_approvers/<id>.toml``, to be committed and reviewed like code.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import err, keys_app, out


@keys_app.command("init")
def keys_init(
    identity_id: Annotated[str | None, typer.Option(
        "--id", help="Your identity id (default: your OS account name)")] = None,
    display_name: Annotated[str | None, typer.Option(
        "--name", help="The name shown beside your approvals (default: the id)")] = None,
    provisional_only: Annotated[bool, typer.Option(
        "--provisional-only", help="List the key as able to sign provisional approvals only "
                                   "(an engineer's review; drills only)")] = False,
) -> None:
    """Create your signing key (unless you have one) and list its public key in this
    workspace."""
    from crisiscomms.identity.identities import os_account
    from crisiscomms.identity.keys import KINDS, register_own_key

    settings = common.load_settings()
    registry = common.key_registry(settings)
    others = [k.id for k in registry.of_os_user(os_account())]
    key, path, created = common.run_or_exit(lambda: register_own_key(
        settings, registry, identity_id=identity_id, display_name=display_name,
        may_sign=("provisional",) if provisional_only else KINDS))
    out.print(f"{'created' if created else 'kept'} the private key of {key.identity_id}: "
              f"{key.path} (mode 600; never share or commit it)", highlight=False,
              soft_wrap=True)
    out.print(f"public key listed in {path}: commit it and have it reviewed", highlight=False,
              soft_wrap=True)
    if [i for i in others if i != key.identity_id]:
        err.print(f"[yellow]note:[/] the OS account {os_account()} also registered "
                  f"{', '.join(i for i in others if i != key.identity_id)} here: one person "
                  "should hold one identity", highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list() -> None:
    """The approvers this workspace lists, with what each key may sign."""
    settings = common.load_settings()
    registry = common.key_registry(settings)
    table = Table("id", "name", "may sign", "registered by", "fingerprint")
    for key in registry.entries():
        table.add_row(key.id, escape(key.display_name), ", ".join(sorted(key.may_sign)),
                      key.os_user or "", key.fingerprint)
    out.print(table)
    for name, problem in registry.problems.items():
        err.print(f"[red]error:[/] {escape(f'{name}: {problem}')}", highlight=False,
                  soft_wrap=True)
    if registry.problems:
        raise typer.Exit(1)


@keys_app.command("whoami")
def keys_whoami() -> None:
    """Who this CLI acts as, and how that is established."""
    settings = common.load_settings()
    me = common.identity(settings)
    how = {"key": "your signing key, listed in this workspace",
           "os_user": "your OS account (no listed key at hand)"}.get(me.method, me.method)
    out.print(f"{me.id} ({me.display_name}), from {how}", highlight=False, markup=False)
