"""Workspaces: ``new`` scaffolds one (runs anywhere; every other command runs inside one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out


@app.command("new")
def new_cmd(
    directory: Annotated[Path, typer.Argument(metavar="DIR",
                                              help="Folder to create (new or empty)")],
) -> None:
    """Create a workspace (playbooks, approved templates, .env.example, README) from the examples.

    Also the thin Prefect entrypoints (flows/) and prefect.yaml, so the workspace deploys to
    Prefect workers from its own folder. Refuses a folder that is not empty.
    """
    from crisiscomms.core.workspace import new_workspace

    root = common.run_or_exit(lambda: new_workspace(directory))
    out.print(f"created the crisiscomms workspace {root}")
    shown = os.path.relpath(root) if root.is_relative_to(Path.cwd()) else str(root)
    out.print(f"next: cd {shown} && crisiscomms drill outage   (then read {shown}/README.md)",
              highlight=False, soft_wrap=True)
