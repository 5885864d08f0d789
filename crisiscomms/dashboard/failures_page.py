"""Failures: failed and unconfirmed deliveries with the provider's reason, per incident and
channel, and the one-click retry.

- **Failed** rows (the provider refused or never answered after every attempt) are re-sent by
  "Retry failed": ``crisiscomms.incident.views.retry_failed`` puts them back to ``planned``
  under the same idempotency keys and this page publishes them at once.
- **Unconfirmed** rows (the provider may have them and cannot say) are never re-sent by that
  button: a person first checks the provider, ticks the confirmation, and only then
  "Re-send unconfirmed" requeues them too.
- **Status page first**: a retried channel's rows of a stage whose status page is not published
  stay planned (``delivery/first_lane.py`` ``hold_back``, as in the flow); retrying the status
  page itself sends, once it is up, the rows of the stages that waited behind it.

Decision: the retry publishes through the engine (``reconcile_sending`` + ``publish_deliveries``
for that incident and channel: the very functions the flow's tasks call, with the same claim,
reconciliation and send policy), not through ``crisiscomms.flows.run_playbook.run_resume``.
Without a
``PREFECT_API_URL`` the flow would start Prefect's temporary server inside the dashboard process
(10-20 s per start, a server subprocess owned by a web page); a button must answer in seconds
and the dashboard must not own infrastructure. Exactly-once does not depend on Prefect: rows are
claimed in the database (a concurrent flow run cannot take the same row) and rows left
``sending`` are reconciled with the provider before anything is resent, honouring the sending
lease so a live sender's rows are left alone. The CLI (``crisiscomms retry``) keeps the flow path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import streamlit as st

from crisiscomms.core.settings import Settings
from crisiscomms.dashboard.data import engine
from crisiscomms.dashboard.session import require
from crisiscomms.delivery.ledger import FailureRow
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.views import delivery_failures, retry_failed

user = require(Permission.view_failures)
st.title("Failures")
st.caption("Deliveries that failed or could not be confirmed, with the provider's reason. "
           "Failed ones can be re-sent at once (same idempotency keys: nobody gets it twice); "
           "unconfirmed ones need a person to check the provider first.")


def publish_channel(incident_ref: str, channel: str) -> dict[str, Any]:
    """Reconcile, then publish the incident's planned rows of ``channel`` (engine path; see the
    module docstring for why not Prefect)."""
    from sqlmodel import select

    from crisiscomms.channels.registry import build_channels, channel_classes
    from crisiscomms.core.database import session_scope
    from crisiscomms.delivery.first_lane import first_lane, held_stages, hold_back
    from crisiscomms.delivery.ledger import pending_by_channel
    from crisiscomms.delivery.sender import PublishReport, publish_deliveries, reconcile_sending
    from crisiscomms.flows.run_playbook import (
        send_policy,  # a plain function: imports Prefect, starts nothing
    )
    from crisiscomms.incident.models import Incident

    settings = Settings()
    eng = engine()
    channels = build_channels(settings)
    with session_scope(eng) as session:
        incident = session.exec(select(Incident).where(Incident.ref == incident_ref)).one()
        incident_id = incident.id
    assert incident_id is not None
    reconciled = reconcile_sending(eng, channels, playbooks_dir=settings.playbooks_dir,
                                   incident_id=incident_id,
                                   stale_after_s=settings.sending_lease_s)
    classes = channel_classes()
    with session_scope(eng) as session:
        ids = pending_by_channel(session, incident_id).get(channel, [])
        # status page first: rows of a stage whose status page is not published stay planned
        go, held = hold_back(session, {channel: ids}, classes,
                             playbooks_dir=settings.playbooks_dir)
        behind = (held_stages(session, incident_id, classes, playbooks_dir=settings.playbooks_dir)
                  if channel in first_lane(classes) else [])
    policy = send_policy(settings)  # the flow's retry policy and rate limits, not a copy

    def send(ids: list[int]) -> PublishReport:
        return publish_deliveries(eng, channels, ids, playbooks_dir=settings.playbooks_dir,
                                  max_attempts=settings.max_attempts,
                                  concurrency=settings.send_concurrency, policy=policy)

    report = send(go.get(channel, []))
    followed = PublishReport()
    if behind:  # the status page is retried: what waited behind it follows once it is up
        waiting = {c: list(ids) for h in behind for c, ids in h.held_ids.items()}
        with session_scope(eng) as session:
            released, held = hold_back(session, waiting, classes,
                                       playbooks_dir=settings.playbooks_dir)
        followed = send([i for ids in released.values() for i in ids])
    return {"sent": report.sent, "failed": report.failed, "unconfirmed": report.unconfirmed,
            "skipped": report.skipped,
            "errors": report.errors + followed.errors + [h.line() for h in held],
            "held": len(held), "followed": followed.sent, "reconciled": reconciled.as_dict()}


def retry(incident_ref: str, channel: str, *, unconfirmed: bool) -> None:
    count, result = retry_failed(engine(), incident_ref, channel=channel,
                                 include_unconfirmed=unconfirmed,
                                 publish=lambda ref: publish_channel(ref, channel))
    st.session_state["failures_last_result"] = (incident_ref, channel, count, result)


def show_last_result() -> None:
    last = st.session_state.get("failures_last_result")
    if not last:
        return
    incident_ref, channel, count, result = last
    if not result:
        st.info(f"{incident_ref} · {channel}: nothing to re-send.")
        return
    text = (f"{incident_ref} · {channel}: re-sent {count} recipient(s): {result['sent']} sent, "
            f"{result['failed']} failed, {result['unconfirmed']} unconfirmed.")
    if result["failed"] or result["unconfirmed"] or result.get("held"):
        st.warning(text + " " + "; ".join(result["errors"][:3]))
    else:
        st.success(text)
    if result.get("followed"):
        st.info(f"{incident_ref}: the status page is up; {result['followed']} recipient(s) of "
                "the channels that waited behind it were sent too.")


def failure_table(rows: list[FailureRow]) -> None:
    st.table([{"state": r.state, "locale": r.locale, "batch": r.batch_no,
               "recipients": r.recipients, "attempts": r.attempts, "reason": r.reason,
               "updated": r.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC")} for r in rows])


show_last_result()
groups: dict[tuple[str, str], list[FailureRow]] = defaultdict(list)
for failure in delivery_failures(engine()):
    groups[(failure.incident_ref, failure.channel)].append(failure)
if not groups:
    st.success("No failed or unconfirmed deliveries.")
for (incident_ref, channel), rows in sorted(groups.items()):
    failed = [r for r in rows if r.state == "failed"]
    unconfirmed = [r for r in rows if r.state == "unconfirmed"]
    st.subheader(f"{incident_ref} · {channel}")
    if failed:
        failure_table(failed)
        st.button(f"Retry failed ({sum(r.recipients for r in failed)} recipients)",
                  key=f"retry-{incident_ref}-{channel}", type="primary",
                  on_click=retry, args=(incident_ref, channel), kwargs={"unconfirmed": False})
    if unconfirmed:
        st.markdown("**Unconfirmed**: the provider may already have these. Check its activity "
                    "log (search the idempotency key) before re-sending.")
        failure_table(unconfirmed)
        checked = st.checkbox("I checked the provider: these were not delivered",
                              key=f"checked-{incident_ref}-{channel}")
        st.button(f"Re-send unconfirmed ({sum(r.recipients for r in unconfirmed)} recipients)",
                  key=f"resend-{incident_ref}-{channel}", disabled=not checked,
                  on_click=retry, args=(incident_ref, channel), kwargs={"unconfirmed": True})
