"""Pre-approved templates: status, propose, approve, diff, gc; and lint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, err, out, templates_app


@templates_app.command("status")
def templates_status() -> None:
    """Show every template: final, provisional, edited since approval, unapproved, or invalid
    (a lock entry that does not verify), and which still need final sign-off for production.
    Exit 1 when a lock entry does not verify."""
    from rich.markup import escape

    from crisiscomms.render.approvals import ApprovalLock, two_person_rule

    settings = common.load_settings()
    lock = common.run_or_exit(lambda: ApprovalLock(settings.templates_dir))
    rule = two_person_rule(settings.playbooks_dir)
    counts: dict[str, int] = {}
    pending: list[str] = []
    out.print(f"{'state':<12} {'production':<10} template  (approved by)", highlight=False)
    for name in lock.template_names():
        st = lock.status(name)
        counts[st.label] = counts.get(st.label, 0) + 1
        why = lock.sign_off(name, two_person=rule(name))
        if why is not None:
            pending.append(name)
        production = "ok" if why is None else (
            "sign-off" if st.state == "approved" else "refused")
        who = f"  ({st.approval.who()}, {st.approval.approved_at})" if st.approval else ""
        out.print(f"{st.label:<12} {production:<10} {name}{who}", highlight=False,
                  soft_wrap=True, markup=False)
    out.print(", ".join(f"{counts.get(label, 0)} {label}" for label in
                        ("final", "provisional", "edited", "unapproved", "invalid")),
              highlight=False)
    if pending:
        out.print(f"{len(pending)} template(s) still need final sign-off before production "
                  "(drills may use provisional ones): crisiscomms templates approve --final "
                  "TEMPLATE...", highlight=False, soft_wrap=True)
    for name in lock.template_names():
        if name in lock.invalid:
            err.print(f"[red]error:[/] {escape(lock.invalid[name])}", highlight=False,
                      soft_wrap=True)
    if any(name in lock.invalid for name in lock.template_names()):
        raise typer.Exit(1)


@templates_app.command("approve")
def templates_approve(
    names: Annotated[list[str] | None, typer.Argument(help="Templates (default: all)")] = None,
    by: Annotated[str | None, typer.Option(
        help="The name shown beside the approval (display only: the approver is whoever holds "
             "the signing key)")] = None,
    final: Annotated[bool, typer.Option(
        "--final", help="A final approval, good for production (default: provisional, good "
                        "for drills only)")] = False,
) -> None:
    """Approve the current content of templates: hash, your identity, kind and time, signed
    with your key (crisiscomms keys init)."""
    from crisiscomms.identity.keys import ApprovalKind, signing_key
    from crisiscomms.render.approvals import ApprovalLock, two_person_rule

    settings = common.load_settings()
    lock = common.run_or_exit(lambda: ApprovalLock(settings.templates_dir))
    common.run_or_exit(lambda: lock.known(names or ()))
    key, listed = common.run_or_exit(lambda: signing_key(settings, lock.registry))
    rule = two_person_rule(settings.playbooks_dir)
    kind: ApprovalKind = "final" if final else "provisional"
    changed = common.run_or_exit(
        lambda: lock.approve(names or lock.template_names(), key, display_name=by, kind=kind,
                             two_person=rule))
    shown = f"{by or listed.display_name} [{key.identity_id}]"
    out.print(f"approved {len(changed)} template(s), {kind}, by {shown}" if changed
              else f"nothing to approve: every template already approved ({kind} or better) "
                   "as it is", highlight=False, markup=False)
    for name in changed:
        out.print(f"  {name}", highlight=False)


@templates_app.command("propose")
def templates_propose(
    names: Annotated[list[str], typer.Argument(help="Templates you wrote or changed")],
    by: Annotated[str | None, typer.Option(
        help="The name shown as author (display only: the author is whoever holds the "
             "signing key)")] = None,
) -> None:
    """Sign as the author of the current content (a two-person playbook refuses the author's
    own approval, whatever name either was typed under)."""
    from crisiscomms.identity.keys import signing_key
    from crisiscomms.render.approvals import ApprovalLock

    settings = common.load_settings()
    lock = common.run_or_exit(lambda: ApprovalLock(settings.templates_dir))
    common.run_or_exit(lambda: lock.known(names))
    key, listed = common.run_or_exit(lambda: signing_key(settings, lock.registry))
    for name in common.run_or_exit(lambda: lock.propose(names, key, by)):
        out.print(f"proposed {name} by {by or listed.display_name} [{key.identity_id}]",
                  highlight=False, markup=False)


@templates_app.command("migrate")
def templates_migrate(
    as_id: Annotated[str, typer.Option(
        "--as", help="The id of the one-off key that signs the carried-over entries")]
    = "legacy-approvals",
    name: Annotated[str, typer.Option(
        "--name", help="Its name in templates/_approvers/")]
    = "Approvals from before signed approvals (provisional only)",
) -> None:
    """Carry a lock from before signed approvals over: every entry becomes a PROVISIONAL
    approval (same hash, time and names shown) signed by a one-off key that may sign
    provisional approvals only and is forgotten at once. Final sign-off is then given
    template by template with: crisiscomms templates approve --final."""
    from crisiscomms.core.errors import IdentityError
    from crisiscomms.identity.keys import generate_key, new_entry
    from crisiscomms.render.approvals import ApprovalLock

    settings = common.load_settings()
    lock = common.run_or_exit(lambda: ApprovalLock(settings.templates_dir))

    def run() -> list[str]:
        if not lock.legacy:
            return lock.migrate(generate_key(as_id))  # refuses, saying why
        key = generate_key(as_id)
        if lock.registry.get(key.identity_id) is not None:
            raise IdentityError(f"{key.identity_id} is already listed in "
                                f"{lock.registry.folder}; name the one-off key with --as",
                                field="id", values=(key.identity_id,))
        lock.registry.register(new_entry(key, name, may_sign=("provisional",)))
        return lock.migrate(key)

    migrated = common.run_or_exit(run)
    out.print(f"carried {len(migrated)} approval(s) over as provisional, signed by the one-off "
              f"key {as_id} (listed in {lock.registry.folder.name}/, provisional only; its "
              "private key was never written). Final sign-off: crisiscomms templates approve "
              "--final", highlight=False, soft_wrap=True)


@templates_app.command("diff")
def templates_diff(
    names: Annotated[list[str] | None, typer.Argument(help="Templates (default: all changed)")]
    = None,
) -> None:
    """Show what changed in templates since they were approved (exit 1 when anything did)."""
    from crisiscomms.render.approvals import ApprovalLock

    lock = ApprovalLock(common.load_settings().templates_dir)
    changed = False
    for name in names or lock.template_names():
        text = common.run_or_exit(lambda name=name: lock.diff(name))  # type: ignore[misc]
        if text:
            changed = True
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if not changed:
        out.print("no changes since approval")
    raise typer.Exit(1 if changed else 0)


@templates_app.command("gc")
def templates_gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List them, remove nothing")]
    = False,
) -> None:
    """Remove approved copies (templates/.approved/) that no lock entry refers to any more."""
    from crisiscomms.render.approvals import ApprovalLock

    templates_dir = common.load_settings().templates_dir
    done = common.run_or_exit(lambda: ApprovalLock(templates_dir).collect_garbage(dry_run=dry_run))
    verb = "would remove" if dry_run else "removed"
    for path in done.copies:
        out.print(f"  {verb} {path.relative_to(templates_dir).as_posix()}", highlight=False,
                  soft_wrap=True)
    out.print(f"{verb} {len(done.copies)} unreferenced approved cop"
              f"{'y' if len(done.copies) == 1 else 'ies'} ({done.bytes:,} bytes); "
              f"kept {done.kept} the lock refers to", highlight=False, soft_wrap=True)


@app.command("lint")
def lint_cmd(
    path: Annotated[Path | None, typer.Argument(
        help="A project folder, a playbooks folder or one playbook file (default: configured)")]
    = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the problems as JSON, one object per problem with its fields")]
    = False,
) -> None:
    """Check every playbook and template: facts, locales, variables, limits, canonical facts."""
    import json

    from rich.markup import escape

    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.playbook.lint import lint, resolve_paths

    known: list[str] = []
    if path is None:  # this workspace's, with its status page's components
        from crisiscomms.channels.status_page import build_status_page
        from crisiscomms.statuspage.maintenances import known_components

        settings = common.load_settings()
        playbooks_dir, templates_dir, names = settings.playbooks_dir, settings.templates_dir, None
        try:
            known = known_components(build_status_page(settings))
        except (OSError, ValueError):  # an unreadable page: the page's own commands say why
            known = []
    else:  # any folder or file: no workspace needed
        playbooks_dir, templates_dir, names = resolve_paths(path, path, path)
    checked, problems = lint(playbooks_dir, templates_dir, CHANNEL_CLASSES, names,
                             known_components=known)
    if as_json:
        sys.stdout.write(json.dumps({"checked": checked,
                                     "problems": [p.as_dict() for p in problems]},
                                    ensure_ascii=False, indent=2) + "\n")
        raise typer.Exit(1 if problems or not checked else 0)
    for problem in problems:
        err.print(f"[red]error:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    out.print(f"linted {len(checked)} playbook(s) ({', '.join(checked)}): "
              f"{len(problems)} problem(s)")
    if problems or not checked:
        raise typer.Exit(1)

