"""Failures: failed and unconfirmed deliveries with the provider's reason, per incident and
channel, and the one-click retry.

- **Events that started nothing** come first: an alert or a recall notice that was accepted
  and did not start its stage (``intake/views.py``: failed, never dispatched, or dispatched and
  never run), with what to check. Nothing is re-sent from here: fix the cause, then trigger
  the stage (``crisiscomms trigger`` or the Trigger page).
- **Failed** rows (the provider refused or never answered after every attempt) are re-sent by
  "Retry failed": ``crisiscomms.incident.views.retry_failed`` puts them back to ``planned``
  under the same idempotency keys and this page publishes them at once.
- **Unconfirmed** rows (the provider may have them and cannot say) are never re-sent by that
  button: a person first checks the provider, ticks the confirmation, and only then
  "Re-send unconfirmed" requeues them too.
- **Status page first**: a retried channel's rows of a stage whose status page is not published
  stay planned (``delivery/first_lane.py`` ``hold_back``, as in the flow); retrying the status
  page itself sends, once it is up, the rows of the stages that waited behind it.

Decision: the retry publishes through the engine, not through a Prefect flow
(``dashboard/publishing.py`` says why).
"""

from __future__ import annotations

from collections import defaultdict

import streamlit as st

from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import session_scope
from crisiscomms.dashboard.data import engine
from crisiscomms.dashboard.publishing import publish_channel
from crisiscomms.dashboard.session import audit, require
from crisiscomms.delivery.ledger import FailureRow
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.views import delivery_failures, retry_failed
from crisiscomms.intake.views import UnstartedEvent, unstarted_events

user = require(Permission.view_failures)
may_retry = user.may(Permission.retry)
st.title("Failures")
st.caption("Deliveries that failed or could not be confirmed, with the provider's reason. "
           "Failed ones can be re-sent at once (same idempotency keys: nobody gets it twice); "
           "unconfirmed ones need a person to check the provider first.")


def retry(incident_ref: str, channel: str, *, unconfirmed: bool) -> None:
    require(Permission.retry)  # re-checked when the click arrives, not only when drawn
    count, result = retry_failed(engine(), incident_ref, channel=channel,
                                 include_unconfirmed=unconfirmed,
                                 publish=lambda ref: publish_channel(ref, channel))
    st.session_state["failures_last_result"] = (incident_ref, channel, count, result)
    audit(user, "deliveries.retried", None, incident_ref=incident_ref, channel=channel,
          unconfirmed=unconfirmed, recipients=count)


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


def intake_section(problems: list[UnstartedEvent]) -> None:
    """Events that came in and started nothing: the acknowledgement people wait for."""
    if not problems:
        return
    st.subheader(f"Events that started nothing ({len(problems)})")
    st.error("These events were accepted but their stage was not started: nobody has been "
             "told yet. Fix the cause below, then trigger the stage by hand (Trigger page or "
             "`crisiscomms trigger`).")
    st.table([{"event": p.event_id, "problem": p.problem, "source": f"{p.kind}/{p.source}",
               "playbook · stage": f"{p.playbook or '-'} · {p.stage or '-'}",
               "incident": p.incident_ref or "-", "reason": p.reason,
               "received": p.received_at.strftime("%Y-%m-%d %H:%M:%S UTC")}
              for p in problems])


show_last_result()
with session_scope(engine()) as session:
    intake_section(unstarted_events(session, now=utcnow()))
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
                  disabled=not may_retry,
                  on_click=retry, args=(incident_ref, channel), kwargs={"unconfirmed": False})
    if unconfirmed:
        st.markdown("**Unconfirmed**: the provider may already have these. Check its activity "
                    "log (search the idempotency key) before re-sending.")
        failure_table(unconfirmed)
        checked = st.checkbox("I checked the provider: these were not delivered",
                              key=f"checked-{incident_ref}-{channel}")
        st.button(f"Re-send unconfirmed ({sum(r.recipients for r in unconfirmed)} recipients)",
                  key=f"resend-{incident_ref}-{channel}", disabled=not (checked and may_retry),
                  on_click=retry, args=(incident_ref, channel), kwargs={"unconfirmed": True})
