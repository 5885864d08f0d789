"""Workspaces: finding one, Settings anchored to it (and its .env only), ``crisiscomms new``,
and commands run outside any workspace (one clear line, exit 2, nothing created)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.core.errors import NotInWorkspaceError, WorkspaceError
from crisiscomms.core.settings import Settings
from crisiscomms.core.workspace import (
    MARKER,
    example_workspace,
    find_workspace,
    new_workspace,
    require_workspace,
)
from crisiscomms.render.approvals import ApprovalLock

# The global --workspace option names the workspace for the whole process (and what it starts)
# through CRISISCOMMS_WORKSPACE; listing it here makes the runner restore it after each call.
runner = CliRunner(env={"CRISISCOMMS_WORKSPACE": None})


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CRISISCOMMS_* from the caller's environment: each test says what it sets."""
    for key in list(os.environ):
        if key.startswith("CRISISCOMMS_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scaffolded workspace, shared by the tests that only read it."""
    return new_workspace(tmp_path_factory.mktemp("made") / "ws")


def make_marker(root: Path, text: str = "[workspace]\nformat = 1\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(text, encoding="utf-8")
    return root


def test_found_from_any_folder_below_its_root(tmp_path: Path) -> None:
    root = make_marker(tmp_path / "ws")
    deep = root / "templates" / "outage"
    deep.mkdir(parents=True)
    assert find_workspace(start=deep) == root.resolve()
    assert find_workspace(start=root) == root.resolve()
    assert find_workspace(start=tmp_path) is None


def test_the_nearest_marker_wins(tmp_path: Path) -> None:
    outer = make_marker(tmp_path / "outer")
    inner = make_marker(outer / "teams" / "emea")
    assert find_workspace(start=inner / "playbooks") == inner.resolve()


def test_a_named_workspace_must_be_one(tmp_path: Path) -> None:
    root = make_marker(tmp_path / "ws")
    assert find_workspace(root, start=tmp_path) == root.resolve()
    with pytest.raises(WorkspaceError, match="is not a crisiscomms workspace"):
        find_workspace(tmp_path / "nope")
    with pytest.raises(WorkspaceError, match="format must be 1"):
        find_workspace(make_marker(tmp_path / "newer", "[workspace]\nformat = 9\n"))
    with pytest.raises(WorkspaceError, match="cannot read it"):
        find_workspace(make_marker(tmp_path / "broken", "[workspace\n"))


def test_outside_any_workspace_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(NotInWorkspaceError, match="create one with: crisiscomms new DIR"):
        require_workspace(start=tmp_path)


def test_settings_default_under_the_workspace_root(
        made: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(made / "templates" / "outage")
    settings = Settings()
    assert settings.workspace == made
    assert settings.data_dir == made / "data"
    assert settings.playbooks_dir == made / "playbooks"
    assert settings.templates_dir == made / "templates"
    assert settings.resolved_database_url == f"sqlite:///{made / 'data' / 'crisiscomms.db'}"


def test_settings_named_workspace_from_anywhere(made: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRISISCOMMS_WORKSPACE", str(made))
    assert Settings().playbooks_dir == made / "playbooks"


def test_settings_outside_a_workspace_refuse(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotInWorkspaceError, match="not inside a crisiscomms workspace"):
        Settings()
    # absolute folders need no workspace (tests, workers configured by environment)
    explicit = Settings(data_dir=tmp_path / "d", playbooks_dir=tmp_path / "p",
                        templates_dir=tmp_path / "t")
    assert explicit.workspace is None
    assert explicit.data_dir == tmp_path / "d"


def test_env_file_read_from_the_workspace_root_not_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_marker(tmp_path / "ws")
    (root / ".env").write_text("CRISISCOMMS_ORGANIZATION=Workspace Corp\n"
                               "CRISISCOMMS_DATA_DIR=var/crisis\n", encoding="utf-8")
    inside = root / "notes"
    inside.mkdir()
    (inside / ".env").write_text("CRISISCOMMS_ORGANIZATION=Cwd Corp\n", encoding="utf-8")
    monkeypatch.chdir(inside)
    settings = Settings()
    assert settings.organization == "Workspace Corp"
    assert settings.data_dir == root.resolve() / "var" / "crisis"  # relative to the root
    monkeypatch.setenv("CRISISCOMMS_ORGANIZATION", "Env Corp")  # the environment wins
    assert Settings().organization == "Env Corp"
    assert Settings(_env_file=None).data_dir == root.resolve() / "data"  # type: ignore[call-arg]


def test_env_file_of_a_folder_outside_any_workspace_is_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        f"CRISISCOMMS_DATA_DIR={tmp_path / 'd'}\nCRISISCOMMS_PLAYBOOKS_DIR={tmp_path / 'p'}\n"
        f"CRISISCOMMS_TEMPLATES_DIR={tmp_path / 't'}\nCRISISCOMMS_ORGANIZATION=Cwd Corp\n",
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotInWorkspaceError):
        Settings()
    settings = Settings(data_dir=tmp_path / "d", playbooks_dir=tmp_path / "p",
                        templates_dir=tmp_path / "t")
    assert settings.organization == "Example Corp"


def test_new_copies_the_example_with_its_approvals(made: Path) -> None:
    example = example_workspace()
    assert sorted(p.name for p in (made / "playbooks").iterdir()) == sorted(
        p.name for p in (example / "playbooks").iterdir())
    lock = ApprovalLock(made / "templates")
    names = lock.template_names()
    assert names == ApprovalLock(example / "templates").template_names()
    assert {lock.status(n).label for n in names} == {"provisional"}  # drills only, at first
    assert (made / "templates" / "_approvers" / "example-workspace.toml").is_file()
    assert (made / "templates" / "approvals.lock").read_bytes() == (
        example / "templates" / "approvals.lock").read_bytes()
    approved = {p.name for p in (example / "templates" / ".approved").iterdir()}
    assert {p.name for p in (made / "templates" / ".approved").iterdir()} == approved
    assert (made / MARKER).read_text() == (example / MARKER).read_text()
    assert sorted(p.name for p in (made / "flows").iterdir()) == ["deploy.py", "handle_event.py",
                                                                "run_playbook.py"]
    assert (made / "prefect.yaml").is_file()
    assert "crisiscomms templates approve" in (made / "README.md").read_text()
    ignored = (made / ".gitignore").read_text().split()
    assert "data/" in ignored and ".env" in ignored
    assert not list(made.rglob("__pycache__"))


def test_env_example_lists_every_setting_commented_out(made: Path) -> None:
    text = (made / ".env.example").read_text()
    assigned = [line for line in text.splitlines() if "=" in line]
    assert all(line.startswith("# CRISISCOMMS_") for line in assigned)
    names = {line[2:].split("=", 1)[0] for line in assigned}
    expected = {f"CRISISCOMMS_{n.upper()}" for n in Settings.model_fields if n != "workspace"}
    assert names == expected
    secrets = [line for line in assigned if "API_KEY" in line or "TOKEN" in line
               or "SECRET" in line]
    assert secrets and all(line.endswith("=") for line in secrets)


def test_new_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    target = tmp_path / "ws"
    target.mkdir()
    (target / "notes.txt").write_text("ours", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="already exists and is not empty"):
        new_workspace(target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]  # no half-made copy beside it


def test_new_fills_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    assert (new_workspace(tmp_path / "ws") / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]


# -- through the command line ---------------------------------------------------------------


@pytest.mark.parametrize("args", [["init"], ["templates", "status"], ["incidents"],
                                  ["drill", "outage", "--recipients", "1"]])
def test_commands_outside_a_workspace_exit_2_with_one_line(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: not inside a crisiscomms workspace (")
    assert lines[0].endswith("create one with: crisiscomms new DIR")
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_help_and_new_work_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["--help"]).exit_code == 0
    result = runner.invoke(app, ["new", "ws"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ws" / MARKER).is_file()
    again = runner.invoke(app, ["new", "ws"])
    assert again.exit_code == 2
    assert "already exists and is not empty" in again.stderr


def test_named_workspace_option(made: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["--workspace", str(made), "templates", "status"])
    assert result.exit_code == 0, result.output
    assert "outage/acknowledge/" in result.stdout
    bad = runner.invoke(app, ["--workspace", str(tmp_path), "templates", "status"])
    assert bad.exit_code == 2
    assert "is not a crisiscomms workspace" in bad.stderr
    assert "CRISISCOMMS_WORKSPACE" not in os.environ  # the runner restored it
    assert list(tmp_path.iterdir()) == []
