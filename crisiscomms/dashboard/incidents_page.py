"""Incidents: the PR lead's command centre.

Per incident: status, its latest stage, the rollout per channel (recipients sent / planned),
what awaits approval or publication (with a link to the Approvals page), the next update the
latest published words promise (overdue ones flagged) and how many recipients' deliveries
failed or are unconfirmed (with a link to the Failures page for those who may open it).

Read through the domain's views (``incident.views.incident_overview``,
``incident.approval_queue.latest_stages`` and ``next_update_due``); refreshed every 5 s.
"""

from __future__ import annotations

import streamlit as st

from crisiscomms.channels.registry import channel_names
from crisiscomms.core.clock import utcnow
from crisiscomms.dashboard.data import engine, settings
from crisiscomms.dashboard.links import page_link
from crisiscomms.dashboard.session import require
from crisiscomms.delivery.models import DeliveryState
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.approval_queue import LatestStage, latest_stages, next_update_due
from crisiscomms.incident.views import incident_overview, relative_time

user = require(Permission.view_incidents)
st.title("Incidents")

FAILED_STATES = (DeliveryState.failed.value, DeliveryState.unconfirmed.value)


def awaits(stage: LatestStage | None) -> str:
    """What the latest stage waits for, in a few words ("" when nothing)."""
    if stage is None:
        return ""
    if stage.waiting_for_second:
        return f"{stage.stage}: second approval (first: {stage.first_approver})"
    if stage.awaiting_approval:
        return f"{stage.stage}: approval"
    if stage.unpublished:
        return f"{stage.stage}: publishing"
    return ""


@st.fragment(run_every=5)
def overview() -> None:
    rows = incident_overview(engine())
    if not rows:
        st.info("No incidents yet. Trigger one with `crisiscomms trigger outage --facts FILE` "
                "or rehearse with `crisiscomms drill outage`.")
        return
    stages = {s.incident_id: s for s in latest_stages(engine(),
                                                      playbooks_dir=settings().playbooks_dir)}
    due = next_update_due(engine(), [r.id for r in rows])
    now = utcnow()
    table, pending, failing = [], [], []
    for row in rows:
        stage = stages.get(row.id)
        failures = sum(c.get(state, 0) for c in row.counts.values() for state in FAILED_STATES)
        next_at = due.get(row.id)
        entry: dict[str, object] = {
            "incident": row.ref,
            "title": row.title,
            "playbook": row.playbook,
            "severity": row.severity,
            "status": row.status,
            "stage": stage.stage if stage is not None else "",
            "drill": row.drill,
            "started": row.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        }
        for channel in channel_names():  # publication order
            c = row.counts.get(channel, {})
            planned = sum(c.values())
            entry[channel] = f"{c.get('sent', 0)}/{planned}" + (
                f" ({c['failed']} failed)" if c.get("failed") else "")
        entry["awaits"] = awaits(stage)
        entry["next update due"] = "" if next_at is None else (
            f"{next_at:%H:%M UTC} ({relative_time(next_at, now)})"
            + (" OVERDUE" if next_at < now else ""))
        entry["failures"] = failures
        table.append(entry)
        if stage is not None and (stage.awaiting_approval or stage.unpublished):
            pending.append(stage)
        if failures:
            failing.append((row.ref, failures))
    st.caption("Per channel: recipients sent / planned. Next update: what the latest published "
               "words promise. Refreshes every 5 s.")
    st.table(table)  # an HTML table: readable by screen readers and by the e2e test
    for stage in pending:
        page_link("approvals_page.py", f"Review {stage.incident_ref} · {stage.stage} "
                  f"({awaits(stage).split(': ', 1)[1]})", query={"incident": stage.incident_ref},
                  icon=":material/approval:")
    if user.may(Permission.view_failures):
        for ref, count in failing:
            page_link("failures_page.py", f"{ref}: {count} recipient(s) failed or unconfirmed",
                      icon=":material/error:")


overview()
