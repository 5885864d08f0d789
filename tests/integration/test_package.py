"""The engine as an installed package, the content as a workspace: ``uv build``, a fresh
virtual environment with the wheel installed (the lock's versions, from uv's cache), then
``crisiscomms new ws``, ``cd ws``, ``crisiscomms drill outage --recipients 100 --json``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from repo_paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def uv() -> list[str]:
    """uv as ``make`` installs it (``python3 -m uv``), else a ``uv`` on the PATH."""
    for command in ([sys.executable, "-m", "uv"], ["python3", "-m", "uv"]):
        if subprocess.run([*command, "--version"], capture_output=True).returncode == 0:
            return command
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build the wheel (make installs it: python3 -m pip install uv)")
    return [found]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    ok(run([*uv(), "build", "--out-dir", str(dist)], PROJECT_ROOT))  # sdist, then the wheel
    (found,) = dist.glob("crisiscomms-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel and the locked dependencies."""
    work = tmp_path_factory.mktemp("venv")
    requirements = work / "requirements.txt"
    ok(run([*uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
            "--quiet", "-o", str(requirements)], PROJECT_ROOT))
    venv = work / "venv"
    ok(run([*uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], work))
    ok(run([*uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
            "-r", str(requirements), str(wheel)], work))
    return venv


def user_environment(venv: Path, home: Path) -> dict[str, str]:
    """A shell with the fresh environment activated and nothing of ours configured."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRISISCOMMS_", "PREFECT_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "VIRTUAL_ENV": str(venv), "PREFECT_HOME": str(home / ".prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    return env


def test_wheel_holds_one_package_and_the_example_workspace(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"crisiscomms", wheel.name.split("-py3")[0] + ".dist-info"}, top
    example = "crisiscomms/_example/"
    for path in ("crisiscomms.toml", "playbooks/outage.yaml", "templates/approvals.lock",
                 "flows/run_playbook.py", "flows/deploy.py", "prefect.yaml"):
        assert example + path in names, path
    approved = [n for n in names if n.startswith(example + "templates/.approved/")]
    assert len(approved) == len(list((PROJECT_ROOT / "templates" / ".approved").iterdir()))
    assert "crisiscomms/dashboard/app.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_new_workspace_drills(installed: Path, tmp_path: Path) -> None:
    env = user_environment(installed, tmp_path)
    crisiscomms = str(installed / "bin" / "crisiscomms")

    # what pip show -f lists: the package, its metadata and the script; no top-level flows
    files = ok(run([*uv(), "pip", "show", "--files", "--python",
                    str(installed / "bin" / "python"), "crisiscomms"], tmp_path)).stdout
    listed = [line.strip() for line in files.split("Files:", 1)[1].splitlines() if line.strip()]
    tops = {line.split("/", 1)[0] for line in listed if not line.startswith("..")}
    assert tops == {"crisiscomms", next(t for t in tops if t.endswith(".dist-info"))}, tops

    # outside any workspace: one line saying how to make one, exit 2, nothing created
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    refused = run([crisiscomms, "init"], outside, env)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "create one with: crisiscomms new DIR" in refused.stderr
    assert list(outside.iterdir()) == []

    ok(run([crisiscomms, "new", "ws"], tmp_path, env))
    ws = tmp_path / "ws"
    assert (ws / "crisiscomms.toml").is_file() and (ws / "templates" / "approvals.lock").is_file()

    done = ok(run([crisiscomms, "drill", "outage", "--recipients", "100", "--json"], ws, env))
    report = json.loads(done.stdout)
    stages = yaml.safe_load((ws / "playbooks" / "outage.yaml").read_text())["stages"]
    assert report["playbook"] == "outage"
    assert report["duplicates"] == 0
    for channel, counts in report["channels"].items():
        assert counts["failed"] == 0, channel
        assert counts["sent"] == counts["planned"] > 0, channel
    assert report["channels"]["email"]["sent"] == 100 * len(stages)
    assert report["emulator_received"]["email"] == report["channels"]["email"]["sent"]
    assert [s["stage"] for s in report["stages"]] == [s["id"] for s in stages]


DASHBOARD_CHECK = """
import pathlib, crisiscomms
from streamlit.testing.v1 import AppTest
app = pathlib.Path(crisiscomms.__file__).parent / "dashboard" / "app.py"
run = AppTest.from_file(str(app), default_timeout=120).run()
assert not run.exception, [e.value for e in run.exception]
assert [t.label for t in run.text_input] == ["User id", "Password"], run.text_input
run.text_input[0].input("priya")
run.text_input[1].input("an installed password")
run.button[0].click().run()
assert not run.exception, [e.value for e in run.exception]
print([t.value for t in run.title])
"""


def test_installed_dashboard_runs_in_a_workspace(installed: Path, tmp_path: Path) -> None:
    """What ``crisiscomms dashboard`` starts (``streamlit run <package>/dashboard/app.py``):
    a user added with ``crisiscomms users add`` signs in; the pages import
    ``crisiscomms.dashboard`` from the installed package and read the workspace's database."""
    env = user_environment(installed, tmp_path)
    ok(run([str(installed / "bin" / "crisiscomms"), "new", "ws"], tmp_path, env))
    ws = tmp_path / "ws"
    ok(run([str(installed / "bin" / "crisiscomms"), "init"], ws, env))
    added = subprocess.run([str(installed / "bin" / "crisiscomms"), "users", "add", "priya",
                            "--role", "pr_lead", "--password-stdin"], cwd=ws, env=env,
                           input="an installed password\n", capture_output=True, text=True,
                           timeout=120)
    assert added.returncode == 0, added.stderr
    shown = ok(run([str(installed / "bin" / "python"), "-c", DASHBOARD_CHECK], ws, env))
    assert "Incidents" in shown.stdout
    assert (ws / "data" / "crisiscomms.db").is_file()
