"""Pre-approved templates: status, propose, approve, diff, gc; and lint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import app, err, out, templates_app


@templates_app.command("status")
def templates_status() -> None:
    """Show every template and whether it is approved, edited since approval, or unapproved."""
    from crisiscomms.render.approvals import ApprovalLock

    lock = ApprovalLock(common.load_settings().templates_dir)
    table = Table("template", "state", "approved by", "at")
    for name in lock.template_names():
        st = lock.status(name)
        table.add_row(name, st.state, st.approval.approved_by if st.approval else "",
                      st.approval.approved_at if st.approval else "")
    out.print(table)


@templates_app.command("approve")
def templates_approve(
    names: Annotated[list[str] | None, typer.Argument(help="Templates (default: all)")] = None,
    by: Annotated[str, typer.Option(help="Approver's name")] = "",
) -> None:
    """Approve the current content of templates (records hash, approver and time)."""
    from crisiscomms.render.approvals import ApprovalLock, two_person_rule

    settings = common.load_settings()
    lock = ApprovalLock(settings.templates_dir)
    rule = two_person_rule(settings.playbooks_dir)
    changed = common.run_or_exit(
        lambda: lock.approve(names or lock.template_names(), by, two_person=rule))
    out.print(f"approved {len(changed)} template(s) by {by}" if changed
              else "nothing to approve: every template already approved as it is")
    for name in changed:
        out.print(f"  {name}")


@templates_app.command("propose")
def templates_propose(
    names: Annotated[list[str], typer.Argument(help="Templates you wrote or changed")],
    by: Annotated[str, typer.Option(help="Author's name")],
) -> None:
    """Record who wrote the current content (a two-person playbook refuses their approval)."""
    from crisiscomms.render.approvals import ApprovalLock

    lock = ApprovalLock(common.load_settings().templates_dir)
    for name in common.run_or_exit(lambda: lock.propose(names, by)):
        out.print(f"proposed {name} by {by}")


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

    if path is None:  # this workspace's
        settings = common.load_settings()
        playbooks_dir, templates_dir, names = settings.playbooks_dir, settings.templates_dir, None
    else:  # any folder or file: no workspace needed
        playbooks_dir, templates_dir, names = resolve_paths(path, path, path)
    checked, problems = lint(playbooks_dir, templates_dir, CHANNEL_CLASSES, names)
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

