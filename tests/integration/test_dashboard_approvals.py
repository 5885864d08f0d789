"""The approvals page and its read views, against a real SQLite database and, for publishing,
the real SendGrid and X emulators: the queue, the preview (every channel × locale, the sample's
first name, X's weighted count, the diff against the published acknowledgement), the two-person
rule by identity through the page, a stale page refused, and what each role sees."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_apptest import open_page, texts
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.audience.models import Recipient
from crisiscomms.channels.registry import build_channels, channel_classes
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.models import Delivery
from crisiscomms.identity.identities import Identity
from crisiscomms.identity.roles import Role
from crisiscomms.incident.approval_queue import approval_queue, awaiting_publication
from crisiscomms.incident.models import Approval, Message
from crisiscomms.incident.preview import SampleRecipient, bundle_preview
from crisiscomms.incident.service import FIRST_OF_TWO, approve, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = pytest.mark.integration
PAGE = "approvals_page.py"
REF = "OUT-APPROVALS-1"
PAT = Identity("pat", "Pat Lead", "dashboard")
LOCALES = ("en", "es", "fr", "de", "ja")
CHANNELS = ("status_page", "x", "mastodon", "bluesky", "support", "slack", "teams", "webhook",
            "email", "sms")


def _facts(settings: Settings, **changes: Any) -> dict[str, Any]:
    return {**load_playbook("outage", settings.playbooks_dir).drill_facts, "incident_ref": REF,
            **changes}


def _trigger(settings: Settings, engine: Engine, stage: str, who: Identity = PAT,
             **changes: Any) -> Any:
    return trigger(engine, settings, channel_classes(), playbook_name="outage",
                   facts=_facts(settings, **changes), stage=stage, actor=who)


def _approvals(engine: Engine, stage: str) -> list[Approval]:
    with Session(engine) as session:
        return list(session.exec(select(Approval).where(Approval.stage == stage)))


def _deliveries(engine: Engine, stage: str) -> int:
    with Session(engine) as session:
        ids = list(session.exec(select(Message.id).where(Message.stage == stage)))
        return len(session.exec(select(Delivery).where(col(Delivery.message_id).in_(ids))).all())


def _two_person(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's playbooks with the outage under the two-person rule."""
    books = tmp_path / "playbooks"
    shutil.copytree(PROJECT_ROOT / "playbooks", books)
    outage = books / "outage.yaml"
    outage.write_text(outage.read_text(encoding="utf-8") + "\napprovals: {required: 2}\n",
                      encoding="utf-8")
    monkeypatch.setenv("CRISISCOMMS_PLAYBOOKS_DIR", str(books))


@pytest.fixture
def pending(dashboard_db: Engine) -> Iterator[tuple[Settings, Engine]]:
    """An outage acknowledged (auto-sent, not published here) and its update awaiting
    approval, triggered by Pat."""
    settings = Settings()
    _trigger(settings, dashboard_db, "acknowledge")
    _trigger(settings, dashboard_db, "update")
    yield settings, dashboard_db


@pytest.fixture
def live(workspace: tuple[Settings, Engine], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Engine]]:
    """The emulators' workspace (1,000 subscribers), the outage under the two-person rule, its
    acknowledgement published to the emulators, its update triggered by Pat; Streamlit's
    caches cleared so the dashboard's engine is this database's."""
    import streamlit as st

    from crisiscomms.dashboard.publishing import publish_stage

    _two_person(tmp_path, monkeypatch)
    st.cache_resource.clear()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    _, engine = workspace
    _trigger(settings, engine, "acknowledge")
    assert publish_stage(REF, "acknowledge")["failed"] == 0
    _trigger(settings, engine, "update")
    yield settings, engine
    st.cache_resource.clear()


# -- the read views ----------------------------------------------------------------------------


def test_queue_holds_the_latest_unapproved_stage_only(pending: tuple[Settings, Engine]) -> None:
    settings, engine = pending
    queue = approval_queue(engine, playbooks_dir=settings.playbooks_dir)
    assert [(q.incident_ref, q.stage, q.triggered_by, q.required) for q in queue] == [
        (REF, "update", "pat", 1)]  # the acknowledgement was auto-approved
    assert queue[0].triggered_at is not None and not queue[0].waiting_for_second

    _trigger(settings, engine, "resolve")  # the update is superseded, never approvable here
    assert [q.stage for q in approval_queue(engine, playbooks_dir=settings.playbooks_dir)] == [
        "resolve"]
    approve(engine, incident_ref=REF, stage="resolve", approver=Identity("ann", "Ann", "t"),
            settings=settings)
    assert approval_queue(engine, playbooks_dir=settings.playbooks_dir) == []
    unpublished = awaiting_publication(engine, playbooks_dir=settings.playbooks_dir)
    assert [(u.stage, u.approver) for u in unpublished] == [("resolve", "ann")]


def test_first_of_two_is_shown_as_waiting(dashboard_db: Engine, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _two_person(tmp_path, monkeypatch)
    settings = Settings()
    _trigger(settings, dashboard_db, "acknowledge")
    _trigger(settings, dashboard_db, "update")
    approve(dashboard_db, incident_ref=REF, stage="update",
            approver=Identity("ann", "Ann", "t"), settings=settings)
    [entry] = approval_queue(dashboard_db, playbooks_dir=settings.playbooks_dir)
    assert (entry.required, entry.first_approver, entry.waiting_for_second) == (2, "ann", True)


def test_preview_is_every_channel_and_locale_as_recipients_see_it(
        pending: tuple[Settings, Engine]) -> None:
    settings, engine = pending
    preview = bundle_preview(engine, settings, REF, "update", classes=channel_classes())
    assert preview.locales == LOCALES
    assert preview.channels == CHANNELS  # publication order
    assert set(preview.messages) == {(c, loc) for c in CHANNELS for loc in LOCALES}
    email = preview.message("email", "en")
    assert email is not None and email.personal
    assert email.parts["text"].startswith("Hi Alex,")
    assert "<p style=\"margin:0 0 16px;\">Hi Alex,</p>" in email.parts["html"]
    assert "%" not in email.parts["text"] and "%first_name" in email.stored["text"]
    # the next update in the sample's zone (the playbook's for the locale: the facts' Berlin)
    assert "11:10" in email.parts["text"]
    nameless = bundle_preview(engine, settings, REF, "update", classes=channel_classes(),
                              sample=SampleRecipient(name=None))
    assert nameless.messages[("email", "en")].parts["text"].startswith("Hi there,")
    assert nameless.messages[("email", "ja")].parts["text"].startswith("お客様")
    x = preview.message("x", "ja")
    assert x is not None and [(p.part, p.limit) for p in x.lengths] == [("text", 280)]
    assert 200 < x.lengths[0].weighted <= 280  # CJK weighs 2: far more than its length
    assert x.lengths[0].weighted != len(x.parts["text"])
    assert preview.message("status_page", "de") is not None
    assert preview.bundle_hash == approval_queue(
        engine, playbooks_dir=settings.playbooks_dir)[0].bundle_hash
    assert all(not m.diff for m in preview.messages.values())  # nothing was published before


# -- the page, every role -------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_approvals_page_for_every_role(pending: tuple[Settings, Engine], role: Role) -> None:
    app = open_page(PAGE, role).run()
    assert not app.exception, [e.value for e in app.exception]
    if role in (Role.support, Role.executive):
        assert [e.value for e in app.error] == [f"Your roles ({role.value}) do not allow "
                                                "this page."]
        assert not app.table and not app.button and not app.code
        return
    shown = texts(app)
    assert "session_state" not in shown  # no module-level string rendered by Streamlit's magic
    assert REF in str(app.table[0].value) and "update" in str(app.table[0].value)
    assert "Hi Alex," in "\n".join(str(c.value) for c in app.code)
    approve_buttons = [b for b in app.button if b.label.startswith("Approve")]
    if role in (Role.pr_lead, Role.approver):
        assert len(approve_buttons) == 1
    else:  # admin: reads everything, acts only through the roles it also holds
        assert not approve_buttons and "may preview, not approve" in shown


def test_page_preview_shows_weighted_count_sandboxed_email_and_locales(
        pending: tuple[Settings, Engine]) -> None:
    app = open_page(PAGE, Role.approver).run()
    captions = [str(c.value) for c in app.caption]
    assert any(c.startswith("text: ") and c.endswith("/280 weighted") for c in captions)
    frames = app.get("iframe")
    assert len(frames) == 1  # one email, this locale
    srcdoc = frames[0].proto.srcdoc
    assert srcdoc.startswith('<iframe sandbox="" ')
    assert "allow-" not in srcdoc.split("srcdoc=")[0]
    assert "&lt;p style=&quot;margin:0 0 16px;&quot;&gt;Hi Alex,&lt;/p&gt;" in srcdoc  # escaped
    assert app.radio[0].options == list(LOCALES)
    app.radio[0].set_value("ja").run()
    assert not app.exception
    assert "Alex様" in "\n".join(str(c.value) for c in app.code)


def test_stale_page_cannot_approve_a_bundle_that_changed(
        pending: tuple[Settings, Engine]) -> None:
    settings, engine = pending
    app = open_page(PAGE, Role.approver, user_id="ann").run()
    shown = next(b for b in app.button if b.label.startswith("Approve"))
    # meanwhile the PR lead posts the update again with another cause
    _trigger(settings, engine, "update", cause="A faulty disk controller in one region.")
    shown.click().run()
    assert not app.exception, [e.value for e in app.exception]
    [error] = [str(e.value) for e in app.error]
    assert "the bundle changed since it was shown" in error and "nothing was approved" in error
    assert _approvals(engine, "update") == []
    assert _deliveries(engine, "update") == 0


# -- two people, through the page, to the emulators --------------------------------------------


def test_two_person_approval_through_the_page_publishes(
        live: tuple[Settings, Engine], emulators: EmulatorPair) -> None:
    settings, engine = live
    before_email = sum(1 for _ in emulators.sendgrid.iter_received())
    before_x = sum(1 for _ in emulators.x.iter_received())

    # the preview diffs against the published acknowledgement, and fills the email exactly as
    # the provider fills a real recipient's
    with Session(engine) as session:
        someone = session.exec(select(Recipient).where(col(Recipient.name).is_not(None))
                               .order_by(col(Recipient.id))).first()
    assert someone is not None and someone.id is not None and someone.name
    sample = SampleRecipient(name=someone.name, email=someone.email, plan=someone.plan,
                             time_zone=someone.time_zone, id=someone.id,
                             unsubscribe_token=someone.unsubscribe_token or "")
    preview = bundle_preview(engine, settings, REF, "update", classes=channel_classes(),
                             channels=build_channels(settings), sample=sample)
    email = preview.message("email", "en")
    assert email is not None and email.previous_stage == "acknowledge" and email.changed
    assert any(line.startswith("+") and "What we found" in line
               for d in email.diff for line in d.lines)
    got = next(m for m in emulators.sendgrid.iter_received() if m["to"] == someone.email)
    ack = bundle_preview(engine, settings, REF, "acknowledge", classes=channel_classes(),
                         channels=build_channels(settings), sample=sample)
    acknowledged = ack.message("email", "en")
    assert acknowledged is not None
    assert (got["subject"], got["text"], got["html"]) == (
        acknowledged.parts["subject"], acknowledged.parts["text"], acknowledged.parts["html"])

    # the author may not approve their own bundle
    author = open_page(PAGE, Role.pr_lead, user_id="pat").run()
    next(b for b in author.button if b.label.startswith("Approve")).click().run()
    [refusal] = [str(e.value) for e in author.error]
    assert "identity pat" in refusal and "triggered this bundle and cannot approve it" in refusal

    # the first approver: recorded, waiting, nothing sent
    ann = open_page(PAGE, Role.approver, user_id="ann").run()
    next(b for b in ann.button if b.label.startswith("Approve")).click().run()
    assert not ann.exception, [e.value for e in ann.exception]
    assert any("waiting for a second person" in str(i.value) for i in ann.info)
    assert [a.kind for a in _approvals(engine, "update")] == [FIRST_OF_TWO]
    assert _deliveries(engine, "update") == 0
    ann.run()  # drawn again: the queue says who approved first
    assert "Waiting for a second person: ann approved first." in texts(ann)
    next(b for b in ann.button if b.label.startswith("Approve")).click().run()
    assert "approved already" in " ".join(str(e.value) for e in ann.error)

    # the second approver (the approver role: no publish permission) completes it: published
    ben = open_page(PAGE, Role.approver, user_id="ben").run()
    next(b for b in ben.button if b.label.startswith("Approve")).click().run()
    assert not ben.exception, [e.value for e in ben.exception]
    done, nothing_left = (str(s.value) for s in ben.success)
    assert nothing_left == "Nothing awaits approval or publication."
    assert done.startswith(f"{REF} · update: Approved by ann + ben and published: ")
    rollout = {row["channel"]: row for row in ben.table[0].value.to_dict("records")}
    assert rollout["email"]["sent"] == 1000 and rollout["x"]["sent"] == 5
    assert rollout["status_page"]["sent"] == 5 and rollout["support"]["sent"] == 5
    assert [a.approver for a in _approvals(engine, "update") if a.kind != FIRST_OF_TWO] == [
        "ann + ben"]
    assert sum(1 for _ in emulators.sendgrid.iter_received()) - before_email == 1000
    assert sum(1 for _ in emulators.x.iter_received()) - before_x == 5
    updated = next(m for m in emulators.sendgrid.iter_received()
                   if m["to"] == someone.email and "What we found" in (m["text"] or ""))
    assert updated["text"] == email.parts["text"]  # the preview was the recipient's email


def test_publish_button_needs_the_publish_permission(
        workspace: tuple[Settings, Engine], emulators: EmulatorPair) -> None:
    import streamlit as st

    st.cache_resource.clear()
    settings, engine = workspace
    _trigger(settings, engine, "acknowledge")
    _trigger(settings, engine, "update")
    approve(engine, incident_ref=REF, stage="update", approver=Identity("ann", "Ann", "t"),
            settings=settings)  # approved at the CLI without publishing

    approver = open_page(PAGE, Role.approver).run()
    assert not [b for b in approver.button if b.label.startswith("Publish")]
    assert "publishing needs the publish permission" in texts(approver)

    lead = open_page(PAGE, Role.pr_lead).run()
    [publish] = [b for b in lead.button if b.label.startswith("Publish")]
    publish.click().run()
    assert not lead.exception, [e.value for e in lead.exception]
    assert str(lead.success[0].value).startswith(f"{REF} · update: Published: ")
    assert _deliveries(engine, "update") > 0
    assert "Nothing awaits approval or publication." in texts(lead.run())
    st.cache_resource.clear()


def test_signed_out_sees_nothing(pending: tuple[Settings, Engine]) -> None:
    app = open_page(PAGE).run()
    assert [w.value for w in app.warning] == ["Sign in to see this page."]
    assert not app.table and not app.code and not app.button and not app.get("iframe")
