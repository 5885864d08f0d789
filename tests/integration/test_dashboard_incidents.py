"""The incidents page, the PR lead's command centre, run by AppTest against the emulators'
workspace: latest stage, what awaits approval (linked to the Approvals page), the next update
the published words promise, and failures (linked to the Failures page for those who may)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_apptest import open_app, open_page
from sqlalchemy.engine import Engine

from crisiscomms.channels.registry import channel_classes
from crisiscomms.core.settings import Settings
from crisiscomms.identity.identities import Identity
from crisiscomms.identity.roles import Role
from crisiscomms.incident.service import trigger
from crisiscomms.playbook.loader import load_playbook

pytestmark = pytest.mark.integration
PAGE = "incidents_page.py"
REF = "OUT-COMMAND-1"


@pytest.fixture
def incident(workspace: tuple[Settings, Engine],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Engine]]:
    """An outage acknowledged and published with X refusing our token (5 posts failed), then
    its update triggered and awaiting approval."""
    import streamlit as st

    from crisiscomms.dashboard.publishing import publish_stage

    st.cache_resource.clear()
    settings, engine = workspace
    facts: dict[str, Any] = {**load_playbook("outage", settings.playbooks_dir).drill_facts,
                             "incident_ref": REF}
    who = Identity("pat", "Pat Lead", "dashboard")
    trigger(engine, settings, channel_classes(), playbook_name="outage", facts=facts, actor=who)
    with monkeypatch.context() as patch:
        patch.setenv("CRISISCOMMS_X_BEARER_TOKEN", "not-the-emulators-token")
        result = publish_stage(REF, "acknowledge")
    assert result["failed"] == 5 and result["sent"] > 0
    trigger(engine, settings, channel_classes(), playbook_name="outage", facts=facts,
            stage="update", actor=who)
    yield settings, engine
    st.cache_resource.clear()


def _row(app: Any) -> dict[str, Any]:
    [row] = app.table[0].value.to_dict("records")
    return dict(row)


def test_command_centre_row(incident: tuple[Settings, Engine]) -> None:
    app = open_page(PAGE, Role.pr_lead).run()
    assert not app.exception, [e.value for e in app.exception]
    row = _row(app)
    assert (row["incident"], row["status"], row["stage"]) == (REF, "identified", "update")
    assert row["awaits"] == "update: approval"
    assert row["failures"] == 5 and row["x"] == "0/5 (5 failed)"
    assert row["email"] == "1000/1000"
    # the acknowledgement promised 10:10 UTC on 23 November 2026 (the drill's facts): past
    assert row["next update due"].startswith("10:10 UTC (") and row["next update due"].endswith(
        "ago) OVERDUE")
    # run alone (no navigation), the links are their labels
    shown = [str(t.value) for t in app.text]
    assert f"Review {REF} · update (approval)" in shown
    assert f"{REF}: 5 recipient(s) failed or unconfirmed" in shown


def test_links_through_the_navigation_follow_the_roles(
        incident: tuple[Settings, Engine]) -> None:
    lead = open_app(Role.pr_lead).run()  # the PR lead's home page is this one
    assert not lead.exception, [e.value for e in lead.exception]
    links = {p.proto.label: p.proto for p in lead.get("page_link")}
    review = links[f"Review {REF} · update (approval)"]
    assert review.page == "approvals" and review.query_string == f"incident={REF}"
    assert links[f"{REF}: 5 recipient(s) failed or unconfirmed"].page == "failures"

    approver = open_app(Role.approver).run()  # may not open the failures page: no link to it
    labels = [p.proto.label for p in approver.get("page_link")]
    assert f"Review {REF} · update (approval)" in labels
    assert not [label for label in labels if "failed or unconfirmed" in label]
    assert not [t for t in approver.text if "failed or unconfirmed" in str(t.value)]

    admin = open_app(Role.admin).run()  # reads everything: both links
    labels = [p.proto.label for p in admin.get("page_link")]
    assert f"Review {REF} · update (approval)" in labels
    assert f"{REF}: 5 recipient(s) failed or unconfirmed" in labels
