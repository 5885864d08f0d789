"""Approvals: the bundles awaiting approval, each previewed as its recipients will see it, and
the button that approves exactly what was shown.

- **Who.** ``Permission.preview`` opens the page; ``Permission.approve`` shows "Approve";
  ``Permission.publish`` shows "Publish" for an approved stage not (completely) published. An
  approver without ``publish`` still publishes by *completing* an approval: the approval is what
  authorises sending, and a completed approval that waited for someone else to press "Publish"
  would leave the public without the words two people signed off.
- **What was shown is what is approved.** The bundle hash drawn on the page travels in the
  button's arguments (not re-read when the click arrives), and ``service.approve`` refuses
  when the stage's bundle is no longer that one (re-triggered with new facts in between): a stale
  page cannot approve a bundle its reader never saw.
- **Two people.** Under a playbook's two-person rule the engine compares identities: the
  trigger's author is refused, a first approval shows "waiting for a second person", and the
  second (another identity) completes it. Every refusal shows the engine's own message.
- **Publishing** is ``dashboard.publishing.publish_stage`` (the status page first, then every
  other channel, through the engine, as ``crisiscomms approve`` publishes); the page then shows
  the stage's rollout per channel from the ledger. When a flow run waits for the approval (an
  event's ``handle-event`` run, ``flows/handle_event.py``) and a Prefect server is configured,
  completing the approval resumes that run instead, and the run publishes; a run that cannot
  be resumed is said so and the page publishes as before.
- **The preview** is ``incident.preview.bundle_preview``: the stored bundle, email personal
  fields filled for a made-up sample recipient by the publisher's own function. Email HTML is
  shown inside an ``<iframe sandbox="">`` (no scripts, no same-origin, no forms, no popups: the
  rendered HTML is the recipient's view, not ours to run); every other text is shown as data
  (code blocks), never as markdown or HTML.
"""

from __future__ import annotations

from html import escape
from typing import Any

import streamlit as st

from crisiscomms.channels.registry import build_channels, channel_classes
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.dashboard.data import engine, settings
from crisiscomms.dashboard.publishing import publish_stage
from crisiscomms.dashboard.session import audit, require
from crisiscomms.flows.approval_resume import resume_waiting
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.approval_queue import LatestStage, bundle_rollout, latest_stages
from crisiscomms.incident.preview import (
    BundlePreview,
    MessagePreview,
    SampleRecipient,
    bundle_preview,
    thread_parts,
)
from crisiscomms.incident.service import approve

RESULT_KEY = "approvals_last_result"  # session_state: the last action's outcome, shown once
EMAIL_FRAME_HEIGHT = 640


def _approve(incident_id: int, incident_ref: str, stage: str, seen_hash: str) -> None:
    """The "Approve" button: ``seen_hash`` is the hash drawn with the button."""
    me = require(Permission.approve)  # re-checked when the click arrives, not only when drawn
    where = f"{incident_ref} · {stage}"
    try:
        bundle = approve(engine(), incident_ref=incident_ref, stage=stage, approver=me.identity,
                         settings=settings(), seen_hash=seen_hash)
    except CrisisCommsError as exc:
        st.session_state[RESULT_KEY] = ("refused", where, str(exc))
        return
    if bundle.approval is None:
        st.session_state[RESULT_KEY] = (
            "waiting", where, f"Your approval of {where} (bundle {seen_hash[:12]}) is recorded: "
            "waiting for a second person (another identity) to approve it.")
        return
    resumed = resume_waiting(engine(), bundle, approved_by=bundle.approval.approver,
                             require_api=True)
    if not resumed.publish_here:  # the waiting flow run publishes
        st.session_state[RESULT_KEY] = (
            "resumed", where, f"Approved by {bundle.approval.approver}: "
            + "; ".join(resumed.lines()) + ".")
        return
    _publish(incident_id, incident_ref, stage, approved_by=bundle.approval.approver,
             notes=resumed.lines())


def _publish_button(incident_id: int, incident_ref: str, stage: str) -> None:
    """The "Publish" button of an approved, unpublished stage."""
    require(Permission.publish)
    _publish(incident_id, incident_ref, stage, approved_by=None, notes=[])


def _publish(incident_id: int, incident_ref: str, stage: str, *,
             approved_by: str | None, notes: list[str]) -> None:
    me = require(Permission.preview)
    where = f"{incident_ref} · {stage}"
    try:
        result = publish_stage(incident_ref, stage)
    except CrisisCommsError as exc:
        st.session_state[RESULT_KEY] = ("refused", where, str(exc))
        return
    audit(me, "stage.published", incident_id, incident_ref=incident_ref, stage=stage,
          sent=result["sent"], failed=result["failed"], unconfirmed=result["unconfirmed"],
          held=result["held"])
    st.session_state[RESULT_KEY] = ("published", where, {
        "approved_by": approved_by, "result": result, "notes": notes,
        "rollout": bundle_rollout(engine(), incident_ref, stage)})


def show_result(last: tuple[str, str, Any] | None) -> None:
    """The outcome of the last click: shown once, beside the buttons (or alone, when nothing
    is left to act on)."""
    if not last:
        return
    kind, where, payload = last
    if kind == "refused":
        st.error(f"{where}: refused. {payload}")
        return
    if kind in ("waiting", "resumed"):
        st.info(payload)
        return
    result: dict[str, Any] = payload["result"]
    approved = (f"Approved by {payload['approved_by']} and published"
                if payload["approved_by"] else "Published")
    text = (f"{where}: {approved}: {result['sent']} sent, {result['failed']} failed, "
            f"{result['unconfirmed']} unconfirmed.")
    if result["failed"] or result["unconfirmed"] or result["held"]:
        st.warning(text)
        for line in result["errors"][:10]:
            st.text(line)  # provider reasons are data
    else:
        st.success(text)
    for line in payload.get("notes", []):
        st.caption(line)
    st.table([{"channel": channel, **counts} for channel, counts in payload["rollout"].items()])


def queue_table(stages: list[LatestStage]) -> None:
    rows = []
    for s in stages:
        rule = "2 people" if s.required == 2 else "1 person" if s.required == 1 else "unknown"
        state = ("waiting for a second person" if s.waiting_for_second
                 else "awaiting approval" if s.awaiting_approval else "approved, not published")
        rows.append({
            "incident": s.incident_ref, "stage": s.stage, "title": s.title,
            "triggered by": (f"{s.triggered_by_name} ({s.triggered_by})"
                             if s.triggered_by_name else s.triggered_by or "unknown"),
            "triggered (UTC)": (s.triggered_at.strftime("%Y-%m-%d %H:%M:%S")
                                if s.triggered_at else ""),
            "rule": rule, "first approval": s.first_approver or "", "state": state,
            "bundle": s.bundle_hash[:12], "drill": s.drill})
    st.table(rows)


def email_frame(html: str, title: str) -> None:
    """The recipient's HTML in a frame with no permissions at all (``sandbox=""``), nested in
    Streamlit's own frame, which allows scripts: the outer document is ours and holds no script;
    the email is an escaped ``srcdoc`` attribute of the inner one."""
    st.iframe(f'<iframe sandbox="" title="{escape(title, quote=True)}" '
              f'style="width:100%;height:{EMAIL_FRAME_HEIGHT - 20}px;border:1px solid #ddd" '
              f'srcdoc="{escape(html, quote=True)}"></iframe>',
              height=EMAIL_FRAME_HEIGHT, alt=title)


def show_message(message: MessagePreview) -> None:
    parts = message.parts
    if message.personal:
        st.caption("Subject")
        st.code(parts.get("subject", ""), language=None, wrap_lines=True)
        if "html" in parts:
            email_frame(parts["html"], f"{message.channel} {message.locale} as the sample "
                                       "recipient sees it")
        with st.expander("Plain-text part"):
            st.code(parts.get("text", ""), language=None, wrap_lines=True)
    elif message.lengths:
        for length in message.lengths:
            st.code(parts[length.part], language=None, wrap_lines=True)
            label = f"{length.weighted}/{length.limit} weighted"
            if length.weighted > length.limit:
                st.error(f"{length.part}: {label}: over the limit")
            else:
                st.caption(f"{length.part}: {label}")
    else:
        for part in thread_parts(parts):
            if len(parts) > 1:
                st.caption(part)
            st.code(parts[part], language=None, wrap_lines=True)
    if message.previous_stage is None:
        st.caption("Nothing published on this channel and locale before: no diff.")
    elif not message.changed:
        st.caption(f"Same as the published {message.previous_stage} "
                   f"(facts v{message.previous_facts_version}).")
    else:
        with st.expander(f"Changes since {message.previous_stage} (published)",
                         expanded=not message.personal):
            for diff in message.diff:
                if diff.lines:
                    st.code("\n".join(diff.lines), language="diff", wrap_lines=True)


def show_preview(preview: BundlePreview) -> None:
    st.subheader(f"{preview.incident_ref} · {preview.stage}"
                 + (f" ({preview.stage_title})" if preview.stage_title else ""))
    st.text(preview.title)  # typed by the PR lead: data
    st.caption(f"Playbook {preview.playbook} · facts v{preview.facts_version} · "
               f"{'drill · ' if preview.drill else ''}rule: {preview.required} "
               f"{'people' if preview.required == 2 else 'person'} · bundle hash")
    st.code(preview.bundle_hash, language=None)
    if preview.latest_facts_version != preview.facts_version:
        st.warning(f"The incident's facts are at v{preview.latest_facts_version}; this stage "
                   f"was rendered from v{preview.facts_version}.")
    locale: str = st.radio("Locale", preview.locales, horizontal=True,
                           key=f"locale-{preview.incident_ref}-{preview.stage}")
    st.caption(f"Personal fields are filled for a sample recipient "
               f"({preview.sample.name or 'no name on file'}, {preview.sample.email}), "
               "as publishing fills each recipient's.")
    personal = {m.channel for m in preview.messages.values() if m.personal}
    columns = st.columns([2 if c in personal else 1 for c in preview.channels])
    for column, channel in zip(columns, preview.channels, strict=True):
        with column:
            st.markdown(f"**{channel.replace('_', ' ')}**")
            message = preview.message(channel, locale)
            if message is None:
                st.caption(f"No {channel} message in {locale}.")
            else:
                show_message(message)


user = require(Permission.preview)
may_approve, may_publish = user.may(Permission.approve), user.may(Permission.publish)
st.title("Approvals")
st.caption("Each bundle is shown as recipients will see it. Approving names the bundle hash "
           "shown here: if the stage is triggered again meanwhile, the approval is refused and "
           "nothing is sent.")
last_result = st.session_state.pop(RESULT_KEY, None)

stages = latest_stages(engine(), playbooks_dir=settings().playbooks_dir)
actionable = [s for s in stages if s.awaiting_approval or s.unpublished]
if not actionable:
    show_result(last_result)
    st.success("Nothing awaits approval or publication.")
    st.stop()
queue_table(actionable)

labels = {f"{s.incident_ref} · {s.stage}": s for s in actionable}
wanted = st.query_params.get("incident")
index = next((i for i, s in enumerate(actionable) if s.incident_ref == wanted), 0)
chosen_label: str = st.selectbox("Bundle", list(labels), index=index)
chosen = labels[chosen_label]
st.query_params["incident"] = chosen.incident_ref

no_name = st.toggle("Sample recipient without a name on file", value=False,
                    help="Shows the playbook's fallback where the recipient's name would be.")
try:
    preview = bundle_preview(engine(), settings(), chosen.incident_ref, chosen.stage,
                             classes=channel_classes(), channels=build_channels(settings()),
                             sample=SampleRecipient(name=None) if no_name else None)
except CrisisCommsError as exc:
    st.error(str(exc))
    st.stop()

if chosen.waiting_for_second:
    st.info(f"Waiting for a second person: {chosen.first_approver} approved first.")
show_preview(preview)
st.divider()
if chosen.awaiting_approval:
    if may_approve:
        st.button(f"Approve {chosen.incident_ref} · {chosen.stage} "
                  f"(bundle {preview.bundle_hash[:12]})", type="primary",
                  key=f"approve-{chosen.incident_ref}-{chosen.stage}", on_click=_approve,
                  args=(chosen.incident_id, chosen.incident_ref, chosen.stage,
                        preview.bundle_hash))
        if chosen.required == 2 and chosen.triggered_by == user.identity.id:
            st.caption("You triggered this bundle: the two-person rule needs two other people.")
    else:
        st.caption("Your roles may preview, not approve.")
elif may_publish:
    st.button(f"Publish {chosen.incident_ref} · {chosen.stage}", type="primary",
              key=f"publish-{chosen.incident_ref}-{chosen.stage}", on_click=_publish_button,
              args=(chosen.incident_id, chosen.incident_ref, chosen.stage))
else:
    st.caption(f"Approved by {chosen.approver}; publishing needs the publish permission.")
show_result(last_result)
