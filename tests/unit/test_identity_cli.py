"""Approvals with real identities, through the CLI (issue: the holes of typed names).

Each test builds a workspace in a temporary folder (the lint fixture's small recall playbook
under the two-person rule) and runs ``crisiscomms`` as a user would. People are real Ed25519
keys generated in the test, each in its own keys folder (``CRISISCOMMS_KEYS_DIR``), as in each
person's home; the OS account is the one running the tests. Nothing of the engine is replaced.

- one person cannot pass the two-person rule under any two names (templates and bundles);
- a hand-edited lock entry (hash, approver, kind, name shown) is refused at lint, status and
  trigger;
- provisional approvals: production ``trigger`` refuses naming every template, stores and
  sends nothing; drill mode runs (the full ``crisiscomms drill`` is in the integration tests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from approvers import approve_all, keys_dir, make_key
from click.testing import Result
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.render.approvals import ApprovalLock, sha256_text

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "lint" / "base"
TEMPLATE = "mini_recall/announce/x.text.en.j2"
STAGE_TEMPLATES = sorted(f"mini_recall/announce/{c}.{p}.{loc}.j2"
                         for c, parts in (("status_page", ("text",)), ("x", ("text",)),
                                          ("email", ("subject", "html", "text")))
                         for p in parts for loc in ("en", "es"))
runner = CliRunner()


class Workspace:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path
        self.root = tmp_path / "ws"
        shutil.copytree(FIXTURE, self.root)
        (self.root / "crisiscomms.toml").write_text("[workspace]\nformat = 1\n")
        playbook = self.root / "playbooks" / "mini_recall.yaml"
        playbook.write_text(playbook.read_text(encoding="utf-8") + "approvals: {required: 2}\n",
                            encoding="utf-8")
        self.templates = self.root / "templates"
        facts = yaml.safe_load(playbook.read_text(encoding="utf-8"))["drill_facts"]
        self.facts = tmp_path / "facts.yaml"
        self.facts.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")

    def run(self, *args: str, as_: str | None = None, mode: str | None = None) -> Result:
        """``crisiscomms ARGS`` in this workspace, holding ``as_``'s key (None: no key at
        hand), in ``mode`` (None: the default)."""
        env = {"CRISISCOMMS_WORKSPACE": str(self.root),
               "CRISISCOMMS_KEYS_DIR": str(keys_dir(self.home, as_ or "-nobody-"))}
        if mode is not None:
            env["CRISISCOMMS_MODE"] = mode
        return runner.invoke(app, list(args), env=env)

    def trigger(self, as_: str | None = None, mode: str | None = None) -> Result:
        return self.run("trigger", "mini_recall", "--facts", str(self.facts), "--no-publish",
                        as_=as_, mode=mode)

    def rows(self, table: str) -> int:
        path = self.root / "data" / "crisiscomms.db"
        if not path.exists():
            return 0
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        finally:
            engine.dispose()

    def lock_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.templates / "approvals.lock").read_text())
        return data

    def write_lock(self, data: dict[str, Any]) -> None:
        (self.templates / "approvals.lock").write_text(json.dumps(data, indent=2))


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    for name in ("DATABASE_URL", "DATA_DIR", "TEMPLATES_DIR", "PLAYBOOKS_DIR", "MODE",
                 "KEYS_DIR", "WORKSPACE"):
        monkeypatch.delenv(f"CRISISCOMMS_{name}", raising=False)
    return Workspace(tmp_path)


def said(result: Result) -> str:
    return " ".join(result.output.split())


# -- one person, any two names --------------------------------------------------------------


def test_template_two_person_rule_compares_identities_not_typed_names(ws: Workspace) -> None:
    """``propose --by Mallory`` then ``approve --by "Mallory."`` (or any other name, or
    --final) by the same key is refused; another identity's key approves."""
    created = ws.run("keys", "init", "--id", "mallory", "--name", "Mallory", as_="mallory")
    assert created.exit_code == 0, created.output
    assert (ws.templates / "_approvers" / "mallory.toml").is_file()
    assert (keys_dir(ws.home, "mallory") / "mallory.key").stat().st_mode & 0o777 == 0o600
    proposed = ws.run("templates", "propose", "--by", "Mallory", TEMPLATE, as_="mallory")
    assert proposed.exit_code == 0, proposed.output
    for typed, extra in (("Mallory.", ()), ("M. (legal)", ()), ("mallory (PR lead)", ()),
                         ("Bob", ("--final",))):
        refused = ws.run("templates", "approve", "--by", typed, *extra, TEMPLATE, as_="mallory")
        assert refused.exit_code == 2, (typed, refused.output)
        assert f"template {TEMPLATE} needs two people: identity mallory proposed this change" \
            in said(refused)
    assert ApprovalLock(ws.templates).status(TEMPLATE).state == "unapproved"  # nothing written
    # with no key at hand, nobody signs anything
    keyless = ws.run("templates", "approve", "--by", "Bob", TEMPLATE)
    assert keyless.exit_code == 2 and "no signing key" in said(keyless)
    # another person, with their own key
    assert ws.run("keys", "init", "--id", "bob", "--name", "Bob (PR lead)",
                  as_="bob").exit_code == 0
    approved = ws.run("templates", "approve", "--final", TEMPLATE, as_="bob")
    assert approved.exit_code == 0, approved.output
    assert "approved 1 template(s), final, by Bob (PR lead) [bob]" in said(approved)
    entry = ApprovalLock(ws.templates).status(TEMPLATE)
    assert entry.kind == "final" and entry.approval is not None
    assert (entry.approval.approver, entry.approval.author_id) == ("bob", "mallory")


def test_bundle_two_person_rule_compares_identities_not_typed_names(ws: Workspace) -> None:
    """A bundle needs two approvers who are two identities, neither the one who triggered:
    one person under two names (``mallory (PR lead)``, ``M. (legal)``), with or without their
    key at hand, counts once."""
    approve_all(ws.templates, ws.home)  # final, proposed by pat, approved by dana
    make_key(ws.home, ws.templates, "tom")
    make_key(ws.home, ws.templates, "bob")
    assert ws.run("keys", "init", "--id", "mallory", as_="mallory").exit_code == 0
    triggered = ws.trigger(as_="tom")
    assert triggered.exit_code == 0, triggered.output
    ref = "FIX-RECALL-1"
    assert f"awaiting approval: crisiscomms approve {ref} --stage announce" in said(triggered)

    def approve(typed: str, as_: str | None) -> Result:
        return ws.run("approve", ref, "--stage", "announce", "--by", typed, "--no-publish",
                      as_=as_)

    first = approve("mallory (PR lead)", "mallory")
    assert first.exit_code == 0, first.output
    assert "first approval" in said(first) and "[mallory]" in said(first)
    again = approve("M. (legal)", "mallory")
    assert again.exit_code == 2, again.output
    assert "identity mallory (here as 'M. (legal)') approved already" in said(again)
    # without her key at hand she is still mallory: her OS account registered that identity
    keyless = approve("Someone Else", None)
    assert keyless.exit_code == 2 and "identity mallory" in said(keyless), keyless.output
    own = approve("Not Tom", "tom")
    assert own.exit_code == 2 and "identity tom" in said(own) and "triggered" in said(own)
    second = approve("Bob", "bob")
    assert second.exit_code == 0, second.output
    assert f"approved {ref} · announce by mallory + bob" in said(second)


# -- hand-edited lock entries ----------------------------------------------------------------


def _edit_hash(ws: Workspace, entry: dict[str, Any]) -> None:
    """The template edited, and the lock's hash edited to match it."""
    path = ws.templates / TEMPLATE
    path.write_text(path.read_text(encoding="utf-8") + " Buy now!", encoding="utf-8")
    entry["sha256"] = sha256_text(path.read_text(encoding="utf-8"))


EDITS = {
    "sha256": _edit_hash,
    "approver": lambda ws, e: e.update(approver="pat"),  # another listed identity
    "kind": lambda ws, e: e.update(kind="final"),  # provisional made final
    "approved_by": lambda ws, e: e.update(approved_by="Dana (PR lead)"),  # the name shown
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_a_hand_edited_lock_entry_is_refused_at_lint_status_and_trigger(
        ws: Workspace, field: str) -> None:
    approve_all(ws.templates, ws.home, kind="provisional", display_name="Eng review")
    assert ws.run("lint").exit_code == 0  # signed entries lint clean
    data = ws.lock_json()
    EDITS[field](ws, data["templates"][TEMPLATE])
    ws.write_lock(data)
    expected = f"lock entry for {TEMPLATE} does not verify: hand-edited?"

    lint = ws.run("lint")
    assert lint.exit_code == 1, lint.output
    assert expected in said(lint) and "field text" in said(lint)
    status = ws.run("templates", "status")
    assert status.exit_code == 1 and expected in said(status)
    assert f"invalid refused {TEMPLATE}" in said(status)
    for mode in ("drill", "production"):
        trigger = ws.trigger(as_="pat", mode=mode)
        assert trigger.exit_code == 2, trigger.output
        assert expected in said(trigger)
    assert ws.rows("incident") == 0 and ws.rows("message") == 0  # nothing stored


def test_a_key_listed_for_provisional_only_cannot_sign_final(ws: Workspace) -> None:
    assert ws.run("keys", "init", "--id", "eng", "--provisional-only",
                  as_="eng").exit_code == 0
    refused = ws.run("templates", "approve", "--final", TEMPLATE, as_="eng")
    assert refused.exit_code == 2 and "eng's key may not sign final approvals" in said(refused)
    # written with the real key by a script instead of the CLI: the verifier refuses it
    from crisiscomms.identity.keys import load_signing_key
    from crisiscomms.render.approvals import TemplateApproval

    key = load_signing_key(keys_dir(ws.home, "eng"))
    assert key is not None
    forged = TemplateApproval(sha256_text((ws.templates / TEMPLATE).read_text()), "Eng",
                              "2026-11-30T00:00:00+00:00", approver="eng", kind="final")
    entry = {**forged.as_json(), "signature": key.sign(forged.payload(TEMPLATE))}
    ws.write_lock({"format": 2, "templates": {TEMPLATE: entry}})
    status = ws.run("templates", "status")
    assert status.exit_code == 1
    assert "eng's key may not sign final approvals" in said(status)


# -- provisional and final -------------------------------------------------------------------


def test_production_trigger_refuses_provisional_templates_naming_them(ws: Workspace) -> None:
    approve_all(ws.templates, ws.home, kind="provisional", display_name="Eng review")
    status = ws.run("templates", "status")
    assert status.exit_code == 0, status.output
    assert f"provisional sign-off {TEMPLATE}" in said(status)
    assert "still need final sign-off before production" in said(status)

    refused = ws.trigger(as_="pat")  # production is the default
    assert refused.exit_code == 2, refused.output
    text_ = said(refused)
    assert "lack a final approval and production sends only final ones" in text_
    assert "nothing was stored or sent" in text_
    for name in STAGE_TEMPLATES:
        assert f"{name}: only provisionally approved" in text_, name
    assert ws.rows("incident") == 0 and ws.rows("auditevent") == 0

    drill = ws.trigger(as_="pat", mode="drill")  # a rehearsal may use them
    assert drill.exit_code == 0, drill.output
    assert ws.rows("incident") == 1

    # final sign-off by another identity than the author (pat proposed every template)
    make_key(ws.home, ws.templates, "bob", "Bob (PR lead)")
    signed = ws.run("templates", "approve", "--final", as_="bob")
    assert signed.exit_code == 0, signed.output
    assert said(ws.run("templates", "status")).count("final ok ") == len(
        ApprovalLock(ws.templates).template_names())
    facts = yaml.safe_load(ws.facts.read_text())
    ws.facts.write_text(yaml.safe_dump({**facts, "incident_ref": "FIX-RECALL-2"}))
    production = ws.trigger(as_="pat")
    assert production.exit_code == 0, production.output


def test_a_final_approval_by_the_author_alone_is_refused_in_production(ws: Workspace) -> None:
    """Mallory proposes and, with a script, signs her own change final as if no two-person
    rule applied: her key is valid, but production needs another identity's sign-off."""
    mallory = make_key(ws.home, ws.templates, "mallory")
    lock = ApprovalLock(ws.templates)
    lock.propose(lock.template_names(), mallory)
    ApprovalLock(ws.templates).approve(lock.template_names(), mallory, kind="final")
    assert ws.run("lint").exit_code == 0  # genuine signatures: nothing hand-edited
    refused = ws.trigger(as_="mallory")
    assert refused.exit_code == 2, refused.output
    assert (f"{TEMPLATE}: final, but the playbook needs two people and mallory approved it "
            "with no signed proposal by another identity") in said(refused)
    assert ws.rows("incident") == 0


def test_an_unreadable_lock_is_a_lint_problem_not_a_crash(ws: Workspace) -> None:
    (ws.templates / "approvals.lock").write_text("{ not json")
    lint = ws.run("lint")
    assert lint.exit_code == 1, lint.output
    assert "approvals.lock: cannot read it" in said(lint)
    trigger = ws.trigger(mode="drill")
    assert trigger.exit_code == 2 and "approvals.lock: cannot read it" in said(trigger)


def test_an_approval_names_the_bundle_it_saw_and_a_changed_bundle_is_refused(
        ws: Workspace) -> None:
    """``approve --bundle HASH`` (the dashboard passes the hash it showed): a bundle re-rendered
    from new facts since it was reviewed is not approved by that review."""
    import re

    approve_all(ws.templates, ws.home)
    for person in ("tom", "bob", "ann"):
        make_key(ws.home, ws.templates, person)
    first = ws.trigger(as_="tom")
    seen = re.search(r"bundle ([0-9a-f]{12})", first.output)
    assert first.exit_code == 0 and seen, first.output
    # the facts change after the reviewer looked: a new bundle
    facts = yaml.safe_load(ws.facts.read_text(encoding="utf-8"))
    facts["recall"]["website"] = "https://www.example.com/recalls/t1-corrected"
    ws.facts.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
    second = ws.trigger(as_="tom")
    now = re.search(r"bundle ([0-9a-f]{12})", second.output)
    assert second.exit_code == 0 and now and now.group(1) != seen.group(1), second.output

    def approve(as_: str, bundle: str) -> Result:
        return ws.run("approve", "FIX-RECALL-1", "--stage", "announce", "--no-publish",
                      "--bundle", bundle, as_=as_)

    before = ws.rows("approval")
    stale = approve("bob", seen.group(1))
    assert stale.exit_code == 2, stale.output
    assert (f"the bundle changed since it was shown (you saw {seen.group(1)}, it is now "
            f"{now.group(1)}); nothing was approved: review it again") in said(stale)
    short = approve("bob", now.group(1)[:6])
    assert short.exit_code == 2 and "at least 12 characters" in said(short)
    assert ws.rows("approval") == before
    assert approve("bob", now.group(1)).exit_code == 0
    done = approve("ann", now.group(1))
    assert done.exit_code == 0 and "by bob + ann" in said(done), done.output
