"""Which flow runs the warm worker (:mod:`crisiscomms.flows.worker`) may run in its own
process, decided from the deployment alone; no Prefect import, so it is cheap to test.

A run goes in-process only when running it there behaves exactly as the stock subprocess
would: the entrypoint names a flow of ``crisiscomms.flows`` (the flow the installed package
holds, already imported), the working directory the deployment asks for is the worker's own
workspace, no custom command, and no environment variable that the run would see differently
from the worker. Anything else gets a reason and runs the stock way, in a subprocess.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

FLOWS_PACKAGE = "crisiscomms.flows"
NOT_FLOW_MODULES = frozenset({"__init__", "deploy", "worker", "warm_routing"})
"""Modules of the package that hold no flow a deployment runs."""

WORKING_DIRECTORY_STEPS = frozenset({
    "prefect.deployments.steps.set_working_directory",
    "prefect.deployments.steps.pull.set_working_directory",
})


@dataclass(frozen=True)
class FlowRef:
    """Where a deployment's flow lives in our package, and how its entrypoint named it."""

    module: str
    """``crisiscomms.flows.run_playbook``"""
    attr: str
    """``publish_stage``"""
    path: str | None = None
    """The entrypoint's file, relative to the run's working directory, for a file entrypoint
    (``flows/run_playbook.py``, the workspace's thin re-export, or the package's own file)."""
    thin: bool = False
    """The file is a workspace's thin entrypoint (``flows/<name>.py``), which must re-export
    the package's flow rather than define its own."""


def flow_ref(entrypoint: str | None) -> FlowRef | None:
    """The package flow an entrypoint names, or None when it is not one of ours.

    ``flows/run_playbook.py:publish_stage`` (a workspace's thin entrypoint),
    ``crisiscomms/flows/run_playbook.py:publish_stage`` (the package file) and
    ``crisiscomms.flows.run_playbook.publish_stage`` (a module path) all name
    ``crisiscomms.flows.run_playbook:publish_stage``."""
    if not entrypoint:
        return None
    if ":" in entrypoint:
        path, attr = entrypoint.rsplit(":", 1)
        file = PurePosixPath(path.replace("\\", "/"))
        if file.suffix != ".py":
            return None
        name, parts = file.stem, file.parts
        if parts[:-1] == ("flows",):
            thin = True
        elif len(parts) >= 3 and parts[-3:-1] == ("crisiscomms", "flows"):
            thin = False
        else:
            return None
        ref = FlowRef(f"{FLOWS_PACKAGE}.{name}", attr, str(file), thin)
    else:
        module, _, attr = entrypoint.rpartition(".")
        if not module.startswith(FLOWS_PACKAGE + ".") or module.count(".") != 2:
            return None
        name = module.rsplit(".", 1)[1]
        ref = FlowRef(module, attr)
    if not (name.isidentifier() and attr.isidentifier()) or name in NOT_FLOW_MODULES:
        return None
    return ref


def reexports(source: str, ref: FlowRef) -> bool:
    """Whether a workspace's ``flows/<name>.py`` is the thin entrypoint ``crisiscomms new``
    writes for this flow: it imports ``ref.attr`` from ``ref.module`` and defines nothing of
    that name itself. An edited entrypoint that defines its own flow runs the stock way."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    imported = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == ref.module and any(
                alias.name == ref.attr and alias.asname in (None, ref.attr)
                for alias in node.names):
            imported = True
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
                node.name == ref.attr):
            return False
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == ref.attr for t in targets):
                return False
    return imported


def working_directory(pull_steps: Sequence[Mapping[str, Any]] | None) -> tuple[Path | None,
                                                                               str | None]:
    """The directory a deployment's pull steps move to, and the reason it cannot run
    in-process if any: only ``set_working_directory`` steps are understood (a ``git_clone``
    or an install would change the code or the environment the run sees)."""
    directory: Path | None = None
    for step in pull_steps or ():
        for name, options in step.items():
            if name not in WORKING_DIRECTORY_STEPS:
                return None, f"its deployment has a pull step {name}"
            target = (options or {}).get("directory")
            if not isinstance(target, str) or "{{" in target:
                return None, "its set_working_directory step names no plain directory"
            directory = Path(target)
    return directory, None


def env_differences(run_env: Mapping[str, str | None], own_env: Mapping[str, str],
                    own_prefect_env: Mapping[str, str]) -> list[str]:
    """The names (never the values: they may be secrets) of the variables the run's
    subprocess would see differently from this process. Prefect's per-run internals
    (``PREFECT__FLOW_RUN_ID``, attribution) and this process's own Prefect settings as
    variables do not count."""
    names = []
    for name, value in run_env.items():
        if name.startswith("PREFECT__") or value is None:
            continue
        if own_env.get(name) == value or own_prefect_env.get(name) == value:
            continue
        names.append(name)
    return sorted(names)


def same_directory(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return False
