"""The dashboard's people: roles and what they allow, the users file (Argon2 hashes, mode 600),
``crisiscomms users``. Real files in a temporary folder, the real CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.core.errors import IdentityError
from crisiscomms.identity.roles import ROLE_PERMISSIONS, Permission, Role, parse_roles
from crisiscomms.identity.users import UserStore

PASSWORD = "correct horse battery staple"
ACTING = {Permission.trigger, Permission.approve, Permission.publish, Permission.retry,
          Permission.schedule_maintenance, Permission.reply}
runner = CliRunner()


def test_support_and_executives_cannot_change_anything() -> None:
    for role in (Role.support, Role.executive, Role.admin):
        assert not ROLE_PERMISSIONS[role] & ACTING, role
    assert ROLE_PERMISSIONS[Role.approver] & ACTING == {Permission.approve}
    assert ROLE_PERMISSIONS[Role.pr_lead] >= ACTING


def test_role_names_are_checked() -> None:
    assert parse_roles(["PR-Lead", "support "]) == {Role.pr_lead, Role.support}
    with pytest.raises(IdentityError, match="unknown role 'boss'; roles: pr_lead, approver"):
        parse_roles(["boss"])


def test_the_users_file_holds_hashes_with_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "users.toml"
    store = UserStore.load(path)
    store.add("Alice", display_name="Alice Martin", roles=["pr_lead"], password=PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = UserStore.load(path)
    signed = again.authenticate("alice", PASSWORD)
    assert signed is not None and signed.identity.id == "alice"
    assert signed.identity.display_name == "Alice Martin" and signed.identity.method == "dashboard"
    assert signed.roles == {Role.pr_lead}
    assert again.authenticate("alice", PASSWORD + "x") is None
    assert again.authenticate("nobody", PASSWORD) is None
    assert again.authenticate("not an id!", PASSWORD) is None
    assert "password_hash" not in repr(again.records["alice"])


def test_bad_users_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    store = UserStore.load(path)
    store.add("bob", display_name=None, roles=["approver"], password=PASSWORD)
    before = path.read_text()
    cases = [
        (dict(user_id="bob", roles=["support"], password=PASSWORD), "user bob exists"),
        (dict(user_id="carol", roles=["support"], password="short"), "at least 12"),
        (dict(user_id="carol", roles=[], password=PASSWORD), "at least one role"),
        (dict(user_id="carol", roles=["chief"], password=PASSWORD), "unknown role"),
        (dict(user_id="Carol Smith", roles=["support"], password=PASSWORD), "not an identity"),
        (dict(user_id="carol", roles=["support"]), "needs a password"),
    ]
    for kwargs, message in cases:
        with pytest.raises(IdentityError, match=message):
            store.add(display_name=None, **kwargs)  # type: ignore[arg-type]
        assert path.read_text() == before


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    UserStore.load(path).add("bob", display_name=None, roles=["support"], password=PASSWORD)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="readable by other users"):
        UserStore.load(path)


def test_single_sign_on_users_match_a_verified_email_only(tmp_path: Path) -> None:
    store = UserStore.load(tmp_path / "users.toml")
    store.add("dana", display_name="Dana", roles=["executive"], email="Dana@Example.com")
    assert store.by_email("dana@example.COM", verified=True) is not None
    assert store.by_email("dana@example.com", verified=False) is None
    assert store.by_email("eve@example.com", verified=True) is None
    assert store.authenticate("dana", PASSWORD) is None  # no password: no local sign-in


def test_users_cli_add_set_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "users.toml"
    monkeypatch.setenv("CRISISCOMMS_DASHBOARD_USERS_PATH", str(users))
    added = runner.invoke(app, ["users", "add", "sam", "--role", "support", "--name",
                                "Sam Support", "--password-stdin"], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "added sam (support)" in added.output
    assert UserStore.load(users).authenticate("sam", PASSWORD) is not None
    changed = runner.invoke(app, ["users", "set", "sam", "--role", "support", "--role",
                                  "executive"])
    assert changed.exit_code == 0 and "executive, support" in changed.output
    listed = runner.invoke(app, ["users", "list"])
    assert "Sam Support" in listed.output and "argon2" not in listed.output
    refused = runner.invoke(app, ["users", "add", "tim", "--role", "cto",
                                  "--password-stdin"], input=PASSWORD + "\n")
    assert refused.exit_code == 2 and "unknown role 'cto'" in refused.output
    assert runner.invoke(app, ["users", "remove", "sam"]).exit_code == 0
    assert UserStore.load(users).records == {}


def test_the_demo_gets_one_user_per_role_once(tmp_path: Path) -> None:
    from crisiscomms.testing.demo_users import ensure_demo_users

    path = tmp_path / "users.toml"
    passwords = ensure_demo_users(path)
    store = UserStore.load(path)
    assert {r for rec in store.records.values() for r in rec.roles} == set(Role)
    assert sum(Role.approver in rec.roles for rec in store.records.values()) == 2
    for user_id, password in passwords.items():
        assert store.authenticate(user_id, password) is not None
    before = path.read_bytes()
    assert ensure_demo_users(path) == {}  # a workspace's own file is never touched
    assert path.read_bytes() == before
