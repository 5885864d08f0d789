"""Workspaces: what a PR team writes, kept apart from the engine (as with dbt or Prefect projects).

A workspace is a folder holding the marker file ``crisiscomms.toml`` at its root, its
``playbooks/`` and its ``templates/`` (with ``templates/approvals.lock`` and the approved copies
in ``templates/.approved/``). Every command runs against one workspace: the folder named by
``--workspace`` or ``CRISISCOMMS_WORKSPACE`` (read by :class:`~crisiscomms.core.settings.Settings`,
the only reader of the environment), else the nearest folder holding the marker, from the
current directory up.

The example workspace is this repository's own ``playbooks/`` and ``templates/``: a wheel ships
them as ``crisiscomms/_example/`` (``force-include`` in ``pyproject.toml``), and a source
checkout uses the repository root itself, so the tree holds no second copy.
``crisiscomms new DIR`` scaffolds a workspace from it (:func:`new_workspace`).
"""

from __future__ import annotations

import secrets
import shutil
import tomllib
from pathlib import Path

from crisiscomms.core.errors import NotInWorkspaceError, WorkspaceError

MARKER = "crisiscomms.toml"
"""The file that makes a folder a workspace."""
FORMAT = 1
"""The ``[workspace] format`` this engine reads."""
EXAMPLE_FILES = ("crisiscomms.toml", "playbooks", "templates", "flows", "prefect.yaml")
"""What ``new`` copies from the example workspace (and what a wheel ships of it)."""
ENTRYPOINTS = ("run_playbook.py", "handle_event.py", "deploy.py")
"""The thin Prefect entrypoint files of ``flows/``."""
_PACKAGE = Path(__file__).resolve().parent.parent
_SCAFFOLD = Path(__file__).resolve().parent / "scaffold"


def not_in_workspace_message(start: Path | None = None) -> str:
    here = (start or Path.cwd()).resolve()
    return (f"not inside a crisiscomms workspace (no {MARKER} in {here} or any folder above "
            "it; or name one with --workspace DIR / CRISISCOMMS_WORKSPACE); create one with: "
            "crisiscomms new DIR")


def check_marker(root: Path) -> None:
    """Refuse a folder whose marker is missing, unreadable, or from a newer engine."""
    marker = root / MARKER
    if not marker.is_file():
        raise WorkspaceError(f"{root} is not a crisiscomms workspace (no {MARKER} there); "
                             "create one with: crisiscomms new DIR")
    try:
        data = tomllib.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise WorkspaceError(f"{marker}: cannot read it: {exc}") from None
    table = data.get("workspace", {})
    fmt = table.get("format", FORMAT) if isinstance(table, dict) else None
    if fmt != FORMAT:
        raise WorkspaceError(f"{marker}: [workspace] format must be {FORMAT} (this crisiscomms "
                             f"reads format {FORMAT}; got {fmt!r})")


def find_workspace(explicit: Path | str | None = None, start: Path | None = None) -> Path | None:
    """The workspace root: ``explicit`` (which must be one), else the nearest folder holding
    the marker from ``start`` (default: the current directory) up; None when there is none."""
    if explicit is not None and str(explicit) != "":
        root = Path(explicit).expanduser().resolve()
        check_marker(root)
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MARKER).is_file():
            check_marker(folder)
            return folder
    return None


def require_workspace(explicit: Path | str | None = None, start: Path | None = None) -> Path:
    """:func:`find_workspace`, refusing with how to make one when there is none."""
    root = find_workspace(explicit, start)
    if root is None:
        raise NotInWorkspaceError(not_in_workspace_message(start))
    return root


def example_workspace() -> Path:
    """The shipped example workspace: ``crisiscomms/_example`` in a wheel, the repository root
    in a source checkout (an editable install)."""
    packaged = _PACKAGE / "_example"
    if (packaged / MARKER).is_file():
        return packaged
    checkout = _PACKAGE.parent
    if (checkout / MARKER).is_file() and (checkout / "pyproject.toml").is_file():
        return checkout
    raise WorkspaceError(f"the example workspace is missing from this installation ({packaged}); "
                         "reinstall crisiscomms from its wheel")


def new_workspace(target: Path) -> Path:
    """Create a workspace at ``target`` (a new or empty folder) from the example workspace:
    the marker, playbooks, templates with their approvals, the Prefect entrypoints and
    ``prefect.yaml``, a ``.env.example`` of every setting, a README for the PR team and a
    ``.gitignore``. All or nothing: it is built beside ``target`` and renamed into place."""
    from crisiscomms.core.settings import env_example

    target = target.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkspaceError(f"{target} already exists and is not empty; crisiscomms new needs "
                             "a new or empty folder")
    if not target.parent.is_dir():
        raise WorkspaceError(f"cannot create {target}: {target.parent} is not a folder")
    example = example_workspace()
    staging = target.parent / f".{target.name}.new-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copy2(example / MARKER, staging / MARKER)
        for folder in ("playbooks", "templates"):
            shutil.copytree(example / folder, staging / folder, ignore=ignore)
        (staging / "flows").mkdir()
        for name in ENTRYPOINTS:
            shutil.copy2(example / "flows" / name, staging / "flows" / name)
        shutil.copy2(example / "prefect.yaml", staging / "prefect.yaml")
        shutil.copy2(_SCAFFOLD / "README.md", staging / "README.md")
        shutil.copy2(_SCAFFOLD / "gitignore", staging / ".gitignore")
        (staging / ".env.example").write_text(env_example(), encoding="utf-8")
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WorkspaceError(f"cannot create the workspace {target}: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
