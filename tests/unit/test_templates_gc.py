"""``crisiscomms templates gc``: approved copies no lock entry refers to are removed (real files
in a temporary folder); a copy the lock refers to never is."""

from __future__ import annotations

from pathlib import Path

import pytest
from approvers import make_key
from typer.testing import CliRunner

from crisiscomms.core.errors import ApprovalError
from crisiscomms.render.approvals import APPROVED_DIR, ApprovalLock, sha256_text

TEMPLATE = "pb/s/x.text.en.j2"
FIRST, SECOND, THIRD = "Hello {{ facts.title }}", "Hello {{ facts.title }}!", "Hi {{ facts.title }}"


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    (root / "pb" / "s").mkdir(parents=True)
    (root / TEMPLATE).write_text(FIRST)
    (root / "pb" / "s" / "email.subject.en.j2").write_text("Subject")
    ApprovalLock(root).approve(ApprovalLock(root).template_names(),
                               make_key(tmp_path, root, "alice"))
    return root


def copy(tdir: Path, text: str) -> Path:
    return tdir / APPROVED_DIR / f"{sha256_text(text)}.j2"


def reapprove(tdir: Path, text: str, by: str = "bob") -> None:
    (tdir / TEMPLATE).write_text(text)
    ApprovalLock(tdir).approve([TEMPLATE], make_key(tdir.parent, tdir, by))


def test_removes_only_the_copies_the_lock_no_longer_refers_to(tdir: Path) -> None:
    reapprove(tdir, SECOND)
    reapprove(tdir, THIRD)
    old = [copy(tdir, FIRST), copy(tdir, SECOND)]
    assert all(p.is_file() for p in old)

    dry = ApprovalLock(tdir).collect_garbage(dry_run=True)
    assert list(dry.copies) == sorted(old) and dry.kept == 2
    assert dry.bytes == len(FIRST) + len(SECOND)
    assert all(p.is_file() for p in old)  # a dry run removes nothing

    done = ApprovalLock(tdir).collect_garbage()
    assert list(done.copies) == sorted(old) and done.bytes == dry.bytes and done.kept == 2
    assert not any(p.exists() for p in old)
    lock = ApprovalLock(tdir)
    assert {p.name for p in (tdir / APPROVED_DIR).iterdir()} == {
        f"{sha}.j2" for sha in lock.referenced()}
    assert lock.approved_text(TEMPLATE) == THIRD  # diff still has the approved text
    assert lock.diff(TEMPLATE) == ""
    assert ApprovalLock(tdir).collect_garbage().copies == ()  # nothing left to collect


def test_a_stale_lock_object_never_removes_a_copy_the_lock_file_now_refers_to(
        tdir: Path) -> None:
    stale = ApprovalLock(tdir)  # read before the next approval
    reapprove(tdir, SECOND)
    done = stale.collect_garbage()
    assert list(done.copies) == [copy(tdir, FIRST)]
    assert copy(tdir, SECOND).is_file()
    assert ApprovalLock(tdir).approved_text(TEMPLATE) == SECOND


def test_a_proposal_counts_as_a_reference(tdir: Path) -> None:
    (tdir / TEMPLATE).write_text(SECOND)
    ApprovalLock(tdir).propose([TEMPLATE], make_key(tdir.parent, tdir, "carol"))
    copy(tdir, SECOND).write_text(SECOND)  # e.g. kept by hand for review
    assert ApprovalLock(tdir).collect_garbage().copies == ()
    assert copy(tdir, SECOND).is_file()


def test_files_that_are_not_approved_copies_are_left_alone(tdir: Path) -> None:
    folder = tdir / APPROVED_DIR
    strangers = [folder / "README", folder / "notes.j2", folder / ("A" * 64 + ".j2"),
                 folder / ("0" * 64 + ".j2.bak")]
    for path in strangers:
        path.write_text("not a copy")
    (folder / ("1" * 64 + ".j2")).mkdir()
    assert ApprovalLock(tdir).collect_garbage().copies == ()
    assert all(p.exists() for p in strangers) and (folder / ("1" * 64 + ".j2")).is_dir()


def test_without_a_lock_file_nothing_is_removed(tdir: Path) -> None:
    (tdir / "approvals.lock").unlink()
    before = sorted((tdir / APPROVED_DIR).iterdir())
    with pytest.raises(ApprovalError, match=r"no approvals\.lock"):
        ApprovalLock(tdir).collect_garbage()
    assert sorted((tdir / APPROVED_DIR).iterdir()) == before


def test_no_copies_folder_is_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "approvals.lock").write_text('{"templates": {}}\n')
    done = ApprovalLock(tmp_path).collect_garbage()
    assert (done.copies, done.bytes, done.kept) == ((), 0, 0)


def test_the_command_lists_then_removes_and_says_how_many_bytes(tdir: Path) -> None:
    from crisiscomms.cli import app

    reapprove(tdir, SECOND)
    old = copy(tdir, FIRST)
    env = {"CRISISCOMMS_TEMPLATES_DIR": str(tdir)}
    runner = CliRunner()
    dry = runner.invoke(app, ["templates", "gc", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"would remove {APPROVED_DIR}/{old.name}" in dry.output
    assert f"would remove 1 unreferenced approved copy ({len(FIRST)} bytes)" in dry.output
    assert old.is_file()
    done = runner.invoke(app, ["templates", "gc"], env=env)
    assert done.exit_code == 0, done.output
    assert f"removed {APPROVED_DIR}/{old.name}" in done.output
    assert f"removed 1 unreferenced approved copy ({len(FIRST)} bytes); kept 2" in done.output
    assert not old.exists()
    (tdir / "approvals.lock").unlink()
    refused = runner.invoke(app, ["templates", "gc"], env=env)
    assert refused.exit_code == 2 and "no approvals.lock" in refused.output


def test_the_shipped_workspace_keeps_exactly_the_copies_its_lock_refers_to() -> None:
    """Run ``crisiscomms templates gc`` after approving shipped templates again."""
    from repo_paths import PROJECT_ROOT

    lock = ApprovalLock(PROJECT_ROOT / "templates")
    assert lock.unreferenced_copies() == []
    assert all(lock.approved_text(name) is not None for name in lock.entries)
