"""Template approvals: hash, approver, time; edits unapprove; bad approvals are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crisiscomms.approvals import ApprovalLock, bundle_hash
from crisiscomms.errors import ApprovalError


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    (tmp_path / "pb" / "s").mkdir(parents=True)
    (tmp_path / "pb" / "s" / "x.text.en.j2").write_text("Hello {{ facts.title }}")
    (tmp_path / "pb" / "s" / "email.subject.en.j2").write_text("Subject")
    return tmp_path


def test_unapproved_then_approved_then_edited(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    name = "pb/s/x.text.en.j2"
    assert lock.status(name).state == "unapproved"
    with pytest.raises(ApprovalError, match="not approved"):
        lock.check(name, (tdir / name).read_text())
    assert lock.approve([name], "alice") == [name]
    reloaded = ApprovalLock(tdir)
    status = reloaded.status(name)
    assert status.state == "approved"
    assert status.approval is not None and status.approval.approved_by == "alice"
    reloaded.check(name, (tdir / name).read_text())
    (tdir / name).write_text("Hello {{ facts.title }}!")
    assert ApprovalLock(tdir).status(name).state == "edited"
    with pytest.raises(ApprovalError, match="edited after approval by alice"):
        ApprovalLock(tdir).check(name, (tdir / name).read_text())


def test_lock_file_is_stable_json(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    lock.approve(lock.template_names(), "bob")
    data = json.loads((tdir / "approvals.lock").read_text())
    assert sorted(data["templates"]) == ["pb/s/email.subject.en.j2", "pb/s/x.text.en.j2"]
    entry = data["templates"]["pb/s/x.text.en.j2"]
    assert set(entry) == {"sha256", "approved_by", "approved_at"}
    assert lock.approve(lock.template_names(), "carol") == []  # unchanged: no new approval


@pytest.mark.parametrize(
    ("names", "approver", "match"),
    [(["pb/s/x.text.en.j2"], " ", "approver"), (["pb/s/nope.j2"], "alice", "no template")],
)
def test_bad_approvals_change_nothing(tdir: Path, names: list[str], approver: str,
                                      match: str) -> None:
    lock = ApprovalLock(tdir)
    with pytest.raises(ApprovalError, match=match):
        lock.approve(names, approver)
    assert not (tdir / "approvals.lock").exists()


def test_bundle_hash_is_order_independent() -> None:
    assert bundle_hash(["a", "b"]) == bundle_hash(["b", "a"])
    assert bundle_hash(["a", "b"]) != bundle_hash(["a", "c"])


def test_shipped_templates_are_all_approved() -> None:
    from crisiscomms.config import PROJECT_ROOT

    lock = ApprovalLock(PROJECT_ROOT / "templates")
    states = {n: lock.status(n).state for n in lock.template_names()}
    assert states and all(s == "approved" for s in states.values()), states
