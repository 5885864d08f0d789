"""Status page first, for real (``delivery/first_lane.py``): the other lanes of a stage wait
until its status page rows are sent; a playbook stage may opt out, explicitly and validly.

Driven through the real trigger → plan → publish path on SQLite, without Prefect; the status
page really fails: its directory's parent is a regular file (root can't write there either)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.errors import PlaybookError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.first_lane import first_lane, hold_back, requeue_held_first
from crisiscomms.delivery.ledger import pending_by_channel
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.sender import publish_deliveries
from crisiscomms.identity.identities import Identity
from crisiscomms.incident.service import StageBundle, plan_bundle, trigger
from crisiscomms.playbook.loader import load_playbook

REF = "FIRST-1"


def broken(settings: Settings, tmp_path: Path) -> Settings:
    """The same workspace with a status page directory that cannot be created."""
    (tmp_path / "not-a-dir").write_text("a regular file where a directory should be\n")
    return settings.model_copy(update={"status_page_dir": tmp_path / "not-a-dir" / "status"})


def acknowledge(engine: Engine, settings: Settings) -> StageBundle:
    """The outage acknowledged to 20 drill subscribers, planned (auto-approved)."""
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.testing.audiences import drill_recipients

    with Session(engine) as session:
        insert_recipients(session, drill_recipients(20, phones=True))  # SMS is held too
        session.commit()
    facts = {**load_playbook("outage", settings.playbooks_dir).drill_facts, "incident_ref": REF}
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                     actor=Identity("test", "Test", "key"))
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    return bundle


def publish_first_lane(engine: Engine, settings: Settings, bundle: StageBundle) -> None:
    with Session(engine) as session:
        planned = pending_by_channel(session, bundle.incident_id)
    ids = [i for c in first_lane(CHANNEL_CLASSES) for i in planned.get(c, [])]
    assert ids
    publish_deliveries(engine, build_channels(settings), ids,
                       playbooks_dir=settings.playbooks_dir, max_attempts=1)


def states(engine: Engine, incident_id: int) -> dict[str, set[str]]:
    with Session(engine) as session:
        rows = session.exec(select(Delivery).where(col(Delivery.incident_id) == incident_id))
        out: dict[str, set[str]] = {}
        for row in rows:
            out.setdefault(row.channel, set()).add(DeliveryState(row.state).value)
        return out


def test_a_failed_status_page_holds_every_other_lane(engine: Engine, settings: Settings,
                                                     tmp_path: Path) -> None:
    bundle = acknowledge(engine, settings)
    publish_first_lane(engine, broken(settings, tmp_path), bundle)
    with Session(engine) as session:
        planned = pending_by_channel(session, bundle.incident_id)
        assert set(planned) == set(bundle_channels(settings)) - set(first_lane(CHANNEL_CLASSES))
        go, held = hold_back(session, planned, CHANNEL_CLASSES,
                             playbooks_dir=settings.playbooks_dir)
    assert go == {}
    [hold] = held
    assert (hold.incident_ref, hold.stage, hold.failed) == (REF, "acknowledge", True)
    assert hold.line().startswith("status page failed for stage acknowledge: status page not "
                                  "published: ENOTDIR")
    assert hold.line().endswith("; nothing else was sent")
    assert set(hold.held) == set(planned) and hold.held["support"] == 5
    assert {c: len(ids) for c, ids in hold.held_ids.items()} == {
        c: len(ids) for c, ids in planned.items()}

    # resume's first step: the failed page goes back to planned, the rest stays planned
    with Session(engine) as session:
        requeued = requeue_held_first(session, bundle.incident_id, CHANNEL_CLASSES,
                                      playbooks_dir=settings.playbooks_dir)
    assert [h.stage for h in requeued] == ["acknowledge"]
    assert all(s == {"planned"} for s in states(engine, bundle.incident_id).values())

    # the page is up: the other lanes may go
    publish_first_lane(engine, settings, bundle)
    with Session(engine) as session:
        planned = pending_by_channel(session, bundle.incident_id)
        go, held = hold_back(session, planned, CHANNEL_CLASSES,
                             playbooks_dir=settings.playbooks_dir)
    assert held == [] and go == planned


def bundle_channels(settings: Settings) -> tuple[str, ...]:
    book = load_playbook("outage", settings.playbooks_dir)
    return book.channels_of(book.stage("acknowledge"), CHANNEL_CLASSES)


def test_a_stage_not_yet_on_the_status_page_holds_too(engine: Engine,
                                                      settings: Settings) -> None:
    """Nothing published yet (the retry of one channel before the flow's first lane ran)."""
    bundle = acknowledge(engine, settings)
    with Session(engine) as session:
        planned = pending_by_channel(session, bundle.incident_id)
        others = {c: ids for c, ids in planned.items() if c not in first_lane(CHANNEL_CLASSES)}
        go, [hold] = hold_back(session, others, CHANNEL_CLASSES,
                               playbooks_dir=settings.playbooks_dir)
    assert go == {} and not hold.failed
    assert hold.line() == ("status page is not published for stage acknowledge: 5 of 5 updates "
                           "planned; nothing else was sent")


def opted_out(settings: Settings, tmp_path: Path, value: str,
              channels: str | None = None) -> Settings:
    books = tmp_path / "playbooks"
    shutil.copytree(settings.playbooks_dir, books)
    path = books / "outage.yaml"
    text = path.read_text(encoding="utf-8")
    shipped = ("[status_page, x, mastodon, bluesky, email, support, sms, slack, teams, "
               "webhook]")
    old = f"    channels: {shipped}\n    required_facts: [next_update_at]\n"
    assert old in text
    new = (f"    channels: {channels or '[status_page, x, email, support, sms]'}\n"
           "    required_facts: [next_update_at]"
           f"\n    status_page_first: {value}\n")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return settings.model_copy(update={"playbooks_dir": books})


def test_a_stage_may_opt_out_explicitly(engine: Engine, settings: Settings,
                                        tmp_path: Path) -> None:
    settings = opted_out(settings, tmp_path, "false")
    assert not load_playbook("outage", settings.playbooks_dir).stage(
        "acknowledge").status_page_first
    bundle = acknowledge(engine, settings)
    publish_first_lane(engine, broken(settings, tmp_path), bundle)
    with Session(engine) as session:
        planned = pending_by_channel(session, bundle.incident_id)
        go, held = hold_back(session, planned, CHANNEL_CLASSES,
                             playbooks_dir=settings.playbooks_dir)
    assert held == [] and go == planned and planned


@pytest.mark.parametrize(("value", "channels", "match"), [
    ('"false"', None, r"stages\.0\.status_page_first: Input should be a valid boolean"),
    ("false", "[x, email]", r"status_page_first: false, but the stage publishes nothing that "
                            r"goes first \(channels: x, email\)"),
])
def test_the_opt_out_is_validated(settings: Settings, tmp_path: Path, value: str,
                                  channels: str | None, match: str) -> None:
    settings = opted_out(settings, tmp_path, value, channels)
    with pytest.raises(PlaybookError, match=match):
        load_playbook("outage", settings.playbooks_dir).check_channels(CHANNEL_CLASSES)
