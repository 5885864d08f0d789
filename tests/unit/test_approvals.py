"""Template approvals: hash, approver, time; edits unapprove; bad approvals are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from approvers import approve_all, make_key
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from crisiscomms.core.errors import ApprovalError, IdentityError
from crisiscomms.identity.identities import Identity
from crisiscomms.identity.keys import SigningKey, create_signing_key
from crisiscomms.render.approvals import ApprovalLock, bundle_hash


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    (root / "pb" / "s").mkdir(parents=True)
    (root / "pb" / "s" / "x.text.en.j2").write_text("Hello {{ facts.title }}")
    (root / "pb" / "s" / "email.subject.en.j2").write_text("Subject")
    return root


def key(tdir: Path, who: str, name: str | None = None, **kw: Any) -> SigningKey:
    """``who``'s real key, in a folder of its own beside the templates, listed in them."""
    return make_key(tdir.parent, tdir, who, name, **kw)


def test_unapproved_then_approved_then_edited(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    name = "pb/s/x.text.en.j2"
    assert lock.status(name).state == "unapproved"
    with pytest.raises(ApprovalError, match="not approved"):
        lock.check(name, (tdir / name).read_text())
    assert lock.approve([name], key(tdir, "alice")) == [name]
    reloaded = ApprovalLock(tdir)
    status = reloaded.status(name)
    assert status.state == "approved" and status.kind == "provisional"
    assert status.approval is not None and status.approval.approved_by == "alice"
    assert status.approval.approver == "alice"
    reloaded.check(name, (tdir / name).read_text())
    (tdir / name).write_text("Hello {{ facts.title }}!")
    assert ApprovalLock(tdir).status(name).state == "edited"
    with pytest.raises(ApprovalError, match="edited after approval by alice"):
        ApprovalLock(tdir).check(name, (tdir / name).read_text())


def test_lock_file_is_stable_json(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    lock.approve(lock.template_names(), key(tdir, "bob"), display_name="Bob")
    data = json.loads((tdir / "approvals.lock").read_text())
    assert data["format"] == 2
    assert sorted(data["templates"]) == ["pb/s/email.subject.en.j2", "pb/s/x.text.en.j2"]
    entry = data["templates"]["pb/s/x.text.en.j2"]
    assert set(entry) == {"sha256", "approved_by", "approved_at", "approver", "kind",
                          "signature"}
    assert (entry["approved_by"], entry["approver"], entry["kind"]) == ("Bob", "bob",
                                                                        "provisional")
    # unchanged content: no new approval, by anyone, of the same or a lesser kind
    assert lock.approve(lock.template_names(), key(tdir, "carol")) == []
    # a final approval of the same content replaces the provisional one
    assert lock.approve(lock.template_names(), key(tdir, "carol"), kind="final") == \
        lock.template_names()
    assert ApprovalLock(tdir).status(TEMPLATE).kind == "final"


def test_bad_approvals_change_nothing(tdir: Path, tmp_path: Path) -> None:
    lock = ApprovalLock(tdir)
    with pytest.raises(ApprovalError, match="no template"):
        lock.approve(["pb/s/nope.j2"], key(tdir, "alice"))
    unlisted = create_signing_key(tmp_path / "stray", "mallory")  # never listed here
    with pytest.raises(IdentityError, match="not listed"):
        lock.approve([TEMPLATE], unlisted)
    with pytest.raises(IdentityError, match="may not sign final"):
        lock.approve([TEMPLATE], key(tdir, "eve", may_sign=["provisional"]), kind="final")
    assert not (tdir / "approvals.lock").exists()


def test_bundle_hash_is_order_independent() -> None:
    assert bundle_hash(["a", "b"]) == bundle_hash(["b", "a"])
    assert bundle_hash(["a", "b"]) != bundle_hash(["a", "c"])


EXAMPLE_KEYS = {"example-workspace", "example-listening", "listening-receivers",
                "example-remedies", "example-channels", "example-sms"}
"""The one-off keys that reviewed the example workspace: the stages' templates, and the
automatic replies added with listening (issue 11), and the resolution email changed to carry its
rating link (``listening-receivers``), and the support holding statements changed to list the
remedies agents may grant (``example-remedies``), and the Mastodon, Bluesky, Slack, Teams and
webhook templates of issue 15 (``example-channels``) and its SMS messages (``example-sms``);
each may sign provisional approvals only."""


def test_shipped_templates_are_all_approved_provisionally_by_the_example_key() -> None:
    """The example workspace was reviewed by engineering, not signed off by a PR lead: every
    entry is provisional, signed by a one-off example key, which may sign nothing else."""
    from repo_paths import PROJECT_ROOT

    lock = ApprovalLock(PROJECT_ROOT / "templates")
    states = {n: lock.status(n) for n in lock.template_names()}
    assert states and all(s.state == "approved" for s in states.values()), states
    assert {s.kind for s in states.values()} == {"provisional"}
    assert {s.approval.approver for s in states.values() if s.approval} == EXAMPLE_KEYS
    for key in EXAMPLE_KEYS:
        listed = lock.registry.get(key)
        assert listed is not None and listed.may_sign == {"provisional"}
        # no OS account: on a user's machine nobody acts as an example key by default (a
        # shipped key naming root made every root user two identities at once)
        assert listed.os_user is None
    assert not lock.invalid


# -- two-person rule, diff since approval, the send re-checks what it sends (issue 4) ---------

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "lint" / "base"
TEMPLATE = "pb/s/x.text.en.j2"


def test_two_person_rule_author_cannot_approve_own_change(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    strict = lambda name: True  # noqa: E731
    alice, bob = key(tdir, "alice"), key(tdir, "bob")
    assert lock.propose([TEMPLATE], alice, "Alice") == [TEMPLATE]
    for typed in ("Alice ", "Bob", "someone else entirely"):  # names do not help
        with pytest.raises(ApprovalError, match=r"identity alice proposed this change"):
            lock.approve([TEMPLATE], alice, display_name=typed, two_person=strict)
    assert ApprovalLock(tdir).status(TEMPLATE).state == "unapproved"  # nothing changed
    assert lock.approve([TEMPLATE], bob, display_name="Alice",
                        two_person=strict) == [TEMPLATE]
    entry = ApprovalLock(tdir).status(TEMPLATE).approval
    assert entry is not None
    assert (entry.approver, entry.author_id, entry.approved_by) == ("bob", "alice", "Alice")
    # the next change by bob needs someone else
    (tdir / TEMPLATE).write_text("Hello again {{ facts.title }}")
    lock = ApprovalLock(tdir)
    lock.propose([TEMPLATE], bob)
    with pytest.raises(ApprovalError, match="identity bob proposed this change"):
        lock.approve([TEMPLATE], bob, two_person=strict)
    assert lock.approve([TEMPLATE], alice, two_person=strict, kind="final") == [TEMPLATE]
    assert ApprovalLock(tdir).sign_off(TEMPLATE, two_person=True) is None


def test_two_person_rule_refuses_when_the_author_is_unknown(tdir: Path) -> None:
    # nobody signed a proposal of this content: no author is known (a git author is typed)
    with pytest.raises(ApprovalError, match=r"author is unknown.*templates propose"):
        ApprovalLock(tdir).approve([TEMPLATE], key(tdir, "bob"), two_person=lambda name: True)
    # a playbook without the rule needs one person only
    assert ApprovalLock(tdir).approve([TEMPLATE], key(tdir, "bob")) == [TEMPLATE]


def test_a_proposal_of_older_content_names_no_author(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    lock.propose([TEMPLATE], key(tdir, "alice"))
    assert ApprovalLock(tdir).author(TEMPLATE) == "alice"
    (tdir / TEMPLATE).write_text("Changed after the proposal {{ facts.title }}")
    assert ApprovalLock(tdir).author(TEMPLATE) is None  # alice did not write this content


def test_a_hand_edited_proposal_names_no_author(tdir: Path) -> None:
    ApprovalLock(tdir).propose([TEMPLATE], key(tdir, "alice"))
    key(tdir, "mallory")
    path = tdir / "approvals.lock"
    data = json.loads(path.read_text())
    data["proposals"][TEMPLATE]["author_id"] = "alice-not"  # claims someone else wrote it
    path.write_text(json.dumps(data))
    assert ApprovalLock(tdir).author(TEMPLATE) is None


def test_templates_diff_shows_what_changed_since_approval(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    lock.approve(lock.template_names(), key(tdir, "dana", "Dana (PR lead)"))
    assert lock.diff(TEMPLATE) == ""
    (tdir / TEMPLATE).write_text("Hello {{ facts.title }}, we are on it")
    diff = ApprovalLock(tdir).diff(TEMPLATE)
    assert f"--- {TEMPLATE} (approved by Dana (PR lead) [dana] at " in diff
    assert f"+++ {TEMPLATE} (now)" in diff
    assert "-Hello {{ facts.title }}" in diff and "+Hello {{ facts.title }}, we are on it" in diff

    runner = CliRunner()
    env = {"CRISISCOMMS_TEMPLATES_DIR": str(tdir)}
    from crisiscomms.cli import app

    result = runner.invoke(app, ["templates", "diff"], env=env)
    assert result.exit_code == 1  # something changed
    assert "+Hello {{ facts.title }}, we are on it" in result.stdout
    assert "email.subject.en.j2" not in result.stdout  # unchanged templates stay quiet
    status = runner.invoke(app, ["templates", "status"], env=env)
    assert "edited" in status.stdout
    ApprovalLock(tdir).approve([TEMPLATE], key(tdir, "dana"))
    result = runner.invoke(app, ["templates", "diff", TEMPLATE], env=env)
    assert result.exit_code == 0 and "no changes since approval" in result.stdout


def test_diff_of_a_never_approved_template_shows_all_of_it(tdir: Path) -> None:
    diff = ApprovalLock(tdir).diff(TEMPLATE)
    assert "(never approved)" in diff and "+Hello {{ facts.title }}" in diff


# -- bundles: a real trigger, approval, plan and publish to the SendGrid emulator -------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The lint fixture's small recall playbook (status page, X, email in en and es) with its
    templates approved for production (proposed by one identity, signed off final by
    another), under the two-person rule."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    path = root / "playbooks" / "mini_recall.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "approvals: {required: 2}\n",
                    encoding="utf-8")
    approve_all(root / "templates", tmp_path)
    return root


@pytest.fixture
def world(project: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.testing.audiences import drill_recipients
    from crisiscomms.testing.emulators import start_emulators

    pair = start_emulators(sendgrid_key="SG.test-key", x_token="x-test-token")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'b.db'}",
        playbooks_dir=project / "playbooks", templates_dir=project / "templates",
        status_page_dir=tmp_path / "status", sendgrid_api_key="SG.test-key",  # type: ignore[arg-type]
        sendgrid_base_url=pair.sendgrid.url, x_bearer_token="x-test-token",  # type: ignore[arg-type]
        x_base_url=pair.x.url,
    )
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(6, locales=("en", "es")))
    try:
        yield {"settings": settings, "engine": engine, "pair": pair, "project": project}
    finally:
        engine.dispose()
        pair.stop()


def who(name: str) -> Identity:
    """An identity as a face hands it to the service (the CLI's tests authenticate it)."""
    return Identity(name.lower(), name.capitalize(), "key")


def _trigger(world: dict[str, Any], actor: str = "alice") -> Any:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook

    pb = load_playbook("mini_recall", world["settings"].playbooks_dir)
    return trigger(world["engine"], world["settings"], CHANNEL_CLASSES,
                   playbook_name="mini_recall", facts=dict(pb.drill_facts), actor=who(actor))


def _approve(world: dict[str, Any], ref: str, who: str) -> Any:
    from crisiscomms.incident.service import approve

    return approve(world["engine"], incident_ref=ref, stage="announce",
                   approver=Identity(who, f"{who} (typed)", "key"),
                   playbooks_dir=world["settings"].playbooks_dir, settings=world["settings"])


def _plan_and_publish(world: dict[str, Any], bundle: Any) -> Any:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.channels.registry import build_channels
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.delivery.sender import publish_deliveries
    from crisiscomms.incident.service import plan_bundle

    engine: Engine = world["engine"]
    plan_bundle(engine, world["settings"], CHANNEL_CLASSES, bundle)
    with Session(engine) as session:
        ids = [d for d in session.exec(select(col(Delivery.id)).where(
            col(Delivery.incident_id) == bundle.incident_id)) if d is not None]
    return publish_deliveries(engine, build_channels(world["settings"]), ids,
                              playbooks_dir=world["settings"].playbooks_dir, max_attempts=1)


def test_bundle_two_person_rule(world: dict[str, Any]) -> None:
    bundle = _trigger(world, actor="alice")
    assert not bundle.approved
    with pytest.raises(ApprovalError, match=r"identity alice .* triggered this bundle"):
        _approve(world, bundle.incident_ref, "alice")
    first = _approve(world, bundle.incident_ref, "bob")
    assert not first.approved  # one of two
    with pytest.raises(ApprovalError, match=r"identity bob .* approved already"):
        _approve(world, bundle.incident_ref, "bob")
    second = _approve(world, bundle.incident_ref, "carol")
    assert second.approved and second.approval.approver == "bob + carol"
    assert second.approval.kind == "two_person"


def test_the_send_checks_the_hash_of_exactly_what_it_sends(world: dict[str, Any]) -> None:
    """A stored message changed after approval (here: its email text) is refused before any
    request leaves; untouched channels still go out."""
    from crisiscomms.incident.models import Message

    bundle = _trigger(world, actor="alice")
    _approve(world, bundle.incident_ref, "bob")
    bundle = _approve(world, bundle.incident_ref, "carol")
    with Session(world["engine"]) as session:
        message = session.exec(select(Message).where(
            Message.incident_id == bundle.incident_id, Message.channel == "email",
            Message.locale == "en")).one()
        parts = json.loads(message.parts_json)
        parts["text"] = parts["text"].replace("Reference:", "Not what was approved. Ref:")
        message.parts_json = json.dumps(parts, ensure_ascii=False, sort_keys=True)
        session.add(message)
        session.commit()
    report = _plan_and_publish(world, bundle)
    assert report.failed == 3  # the three en recipients of the tampered email
    assert any("does not match its approved hash" in e for e in report.errors), report.errors
    received = world["pair"].sendgrid.stats()["recipients"]
    assert received == 3  # only the es email went out
    assert all("Not what was approved" not in json.dumps(r)
               for r in world["pair"].sendgrid.iter_received())


def test_an_unapproved_bundle_plans_nothing(world: dict[str, Any]) -> None:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.incident.service import plan_bundle

    bundle = _trigger(world, actor="alice")
    _approve(world, bundle.incident_ref, "bob")  # one of two: not approved yet
    with pytest.raises(ApprovalError, match="awaits approval"):
        plan_bundle(world["engine"], world["settings"], CHANNEL_CLASSES, bundle)
    assert world["pair"].sendgrid.stats()["recipients"] == 0


def test_an_edited_template_refuses_a_new_render_before_any_write(world: dict[str, Any]) -> None:
    from crisiscomms.incident.models import Incident

    name = "mini_recall/announce/email.text.en.j2"
    path = world["project"] / "templates" / name
    path.write_text(path.read_text(encoding="utf-8") + "\nP.S. unreviewed\n", encoding="utf-8")
    with pytest.raises(ApprovalError, match=r"email\.text\.en\.j2 was edited after approval"):
        _trigger(world)
    with Session(world["engine"]) as session:
        assert session.exec(select(Incident)).first() is None  # nothing stored


def test_a_template_edited_after_bundle_approval_changes_neither_send_nor_next_trigger(
    world: dict[str, Any],
) -> None:
    """The approvers approved rendered content: exactly that goes out (hash re-checked at
    send), never the edited template's words; the edit itself is refused at the next trigger
    until it is approved in its turn."""
    bundle = _trigger(world, actor="alice")
    _approve(world, bundle.incident_ref, "bob")
    bundle = _approve(world, bundle.incident_ref, "carol")
    name = "mini_recall/announce/email.text.en.j2"
    path = world["project"] / "templates" / name
    path.write_text(path.read_text(encoding="utf-8") + "\nP.S. unreviewed\n", encoding="utf-8")
    report = _plan_and_publish(world, bundle)
    assert report.failed == 0
    received = world["pair"].sendgrid.received()
    assert received and not any("unreviewed" in json.dumps(r) for r in received)
    with pytest.raises(ApprovalError, match=r"email\.text\.en\.j2"):
        _trigger(world, actor="alice")
