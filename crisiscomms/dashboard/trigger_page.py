"""Trigger: the PR lead starts a playbook, or posts the next stage (update, resolution) of an
open incident, from a form built from the playbook (``incident/fact_form.py``).

- Choose a playbook, then a new incident or an open one, then a stage: only the stages the
  lifecycle allows next are offered (``incident/trigger_views.py`` ``next_stages``).
- The form asks the playbook's required facts and the stage's, the optional ones, and the prose
  facts of every other locale; for an open incident it is prefilled from the latest fact sheet,
  so an update changes only what the PR lead changes.
- "Trigger" calls ``incident.service.trigger`` as the signed-in identity, exactly as
  ``crisiscomms trigger`` does: a refusal shows the engine's message at the top and each
  problem next to the field it names, and stores nothing.
- After a trigger: the bundle hash; an ``auto_send`` stage is published at once
  (``dashboard/publishing.py``) and each channel's deliveries are shown; any other stage awaits
  approval on the Approvals page.

Everything typed is data: it goes to the engine as values and comes back only inside widgets or
escaped (``plain_text.plain``), never as markdown or HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.dashboard.data import engine, settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.dashboard.playbooks import playbook as cached_playbook
from crisiscomms.dashboard.publishing import publish_stage
from crisiscomms.dashboard.session import audit, require
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.fact_form import (
    FactForm,
    FormField,
    build_form,
    combine_datetime,
    errors_by_field,
    facts_from_form,
    rehearsal_facts,
    split_datetime,
    time_zones,
)
from crisiscomms.incident.service import trigger
from crisiscomms.incident.trigger_views import (
    incident_channel_counts,
    incident_facts,
    incident_stages,
    next_stages,
    open_incidents,
)
from crisiscomms.playbook.loader import available_playbooks

NEW = "(new incident)"
RESULT_KEY = "trigger_result"
ERRORS_KEY = "trigger_errors"
APPROVALS_PAGE = "approvals_page.py"

user = require(Permission.trigger)
config = settings()
st.title("Trigger")
st.caption("Start a playbook, or post the next stage of an open incident. The form refuses "
           "what `crisiscomms trigger` refuses, with the same messages.")


def widget_key(form_key: str, path: str) -> str:
    return f"fact|{form_key}|{path}"


def typed_values(form: FactForm, form_key: str) -> dict[str, Any]:
    """The form's values as typed (date-times combined with their zone picker)."""
    values: dict[str, Any] = {}
    for f in form.fields:
        raw = st.session_state.get(widget_key(form_key, f.path))
        if f.kind == "datetime":
            zone = st.session_state.get(widget_key(form_key, f.path) + "|zone") or "UTC"
            raw = combine_datetime(str(raw or ""), str(zone))
        values[f.path] = raw
    return values


def do_trigger(form: FactForm, form_key: str, incident_ref: str | None) -> None:
    """The "Trigger" button: runs before the page is drawn again, so errors land next to
    their fields in that run."""
    require(Permission.trigger)  # re-checked when the click arrives, not only when drawn
    st.session_state.pop(RESULT_KEY, None)
    st.session_state.pop(ERRORS_KEY, None)
    facts = facts_from_form(form, typed_values(form, form_key))
    if incident_ref is not None:  # the incident is the one chosen, whatever the field says
        facts["incident_ref"] = incident_ref
    drill = bool(st.session_state.get("trigger_drill", False)) and incident_ref is None
    try:
        bundle = trigger(engine(), settings(), CHANNEL_CLASSES, playbook_name=form.playbook,
                         facts=facts, stage=form.stage, actor=user.identity, drill=drill)
    except CrisisCommsError as exc:
        st.session_state[ERRORS_KEY] = (form_key, str(exc), errors_by_field(
            exc, (*form.paths, "playbook", "stage")))
        return
    for key in [k for k in st.session_state if str(k).startswith("trigger_rehearsal|")]:
        del st.session_state[key]  # the next rehearsal is a new incident with a new reference
    result: dict[str, Any] = {"ref": bundle.incident_ref, "stage": bundle.stage,
                              "bundle_hash": bundle.bundle_hash, "approved": bundle.approved,
                              "messages": len(bundle.message_ids)}
    if bundle.approved:  # auto_send: published at once, status page first
        try:
            result["published"] = publish_stage(bundle.incident_ref, bundle.stage)
        except CrisisCommsError as exc:
            result["publish_error"] = str(exc)
        result["channels"] = incident_channel_counts(engine(), bundle.incident_ref)
        audit(user, "stage.published", bundle.incident_id, stage=bundle.stage,
              bundle_hash=bundle.bundle_hash,
              sent=result.get("published", {}).get("sent", 0),
              failed=result.get("published", {}).get("failed", 0))
    st.session_state[RESULT_KEY] = result


def show_result() -> None:
    result = st.session_state.get(RESULT_KEY)
    if not result:
        return
    st.success(plain(f"{result['ref']} · {result['stage']}: {result['messages']} messages "
                     "rendered."))
    st.markdown("Bundle hash (what an approval names):")
    st.code(result["bundle_hash"], language=None)
    if not result["approved"]:
        text = (f"Awaiting approval: {result['ref']} · {result['stage']} is on the Approvals "
                "page.")
        if (_page_dir() / APPROVALS_PAGE).exists():
            try:
                st.page_link(APPROVALS_PAGE, label=plain(text), icon=":material/approval:")
                return
            except st.errors.StreamlitAPIException:  # no navigation (a page run on its own)
                pass
        st.info(plain(text))
        return
    published = result.get("published")
    if result.get("publish_error"):
        st.error(plain(f"Published with errors: {result['publish_error']}"))
    elif published is not None:
        line = (f"Auto-sent: {published['sent']} sent, {published['failed']} failed, "
                f"{published['unconfirmed']} unconfirmed.")
        if published["failed"] or published["unconfirmed"] or published.get("held"):
            st.warning(plain(line + " " + "; ".join(published["errors"][:3])))
        else:
            st.success(plain(line))
    st.table([{"channel": channel, **states}
              for channel, states in sorted(result.get("channels", {}).items())])


def _page_dir() -> Path:
    return Path(__file__).parent


def field_errors(errors: dict[str, list[str]], path: str) -> None:
    for message in errors.get(path, []):
        st.error(plain(message), icon=":material/error:")


def draw_field(f: FormField, form_key: str, zones: tuple[str, ...], default_zone: str,
               errors: dict[str, list[str]], *, locked: bool = False) -> None:
    key = widget_key(form_key, f.path)
    label = f"{f.label} *" if f.required else f.label
    help_text = f.help or None
    if f.kind == "datetime":
        text, zone = split_datetime(f.value, default_zone)
        left, right = st.columns([2, 1])
        left.text_input(label, value=text, key=key, help=(help_text or "") +
                        " Typed as 2026-11-23 09:40 in the zone on the right (an ISO time with "
                        "its own offset keeps it).", placeholder="YYYY-MM-DD HH:MM")
        right.selectbox(f"{f.label}: time zone", zones, index=zones.index(zone)
                        if zone in zones else 0, key=key + "|zone")
    elif f.kind in ("choice", "zone"):
        options = zones if f.kind == "zone" else f.choices
        value = None if f.value is None else str(f.value)
        st.selectbox(label, options, index=options.index(value) if value in options else None,
                     key=key, help=help_text, placeholder="(not set)")
    elif f.kind == "multichoice":
        st.multiselect(label, f.choices, default=[v for v in (f.value or ()) if v in f.choices],
                       key=key, help=help_text)
    elif f.kind == "list":
        st.text_area(label, value="\n".join(str(v) for v in (f.value or ())), key=key,
                     help=(help_text or "") + " One per line.", height=80)
    elif f.kind == "prose":
        st.text_area(label, value="" if f.value is None else str(f.value), key=key,
                     help=help_text, height=90)
    else:  # line, url, number, date
        placeholder = {"url": "https://", "date": "YYYY-MM-DD"}.get(f.kind)
        st.text_input(label, value="" if f.value is None else str(f.value), key=key,
                      help=help_text, placeholder=placeholder, disabled=locked)
    field_errors(errors, f.path)


# -- choose the playbook, the incident, the stage ----------------------------------------------
playbooks = available_playbooks(config.playbooks_dir)
if not playbooks:
    st.warning(f"No playbooks in {plain(str(config.playbooks_dir))}.")
    st.stop()
playbook_name = st.selectbox("Playbook", playbooks, key="trigger_playbook")
try:
    playbook = cached_playbook(playbook_name)
except CrisisCommsError as exc:  # a playbook being edited: say what `crisiscomms lint` says
    st.error(plain(str(exc)))
    st.stop()
candidates = open_incidents(engine(), playbook)
labels = {c.label(): c for c in candidates}
choice = st.selectbox("Incident", [NEW, *labels], key=f"trigger_incident|{playbook.name}",
                      help="A new incident, or an open one of this playbook to post its next "
                           "stage (an update, the resolution).")
chosen = labels.get(choice)
stages = (incident_stages(engine(), playbook, chosen.ref) if chosen is not None
          else next_stages(playbook, None))
if not stages:
    st.info("The lifecycle allows no further stage for this incident.")
    st.stop()
stage_ids = [s.id for s in stages]
stage_id = st.selectbox("Stage", stage_ids,
                        format_func=lambda s: f"{s} · {playbook.stage(s).title}"
                        + (" (sent at once, no approval)" if playbook.stage(s).auto_send else ""),
                        key=f"trigger_stage|{playbook.name}|{choice}")
base = incident_facts(engine(), chosen.ref) if chosen is not None else None
if chosen is None and playbook.drill_facts and st.toggle(
        "Start from the playbook's rehearsal facts", key=f"trigger_rehearse|{playbook.name}",
        help="A drill: the form is filled with the playbook's own realistic facts "
             "(drill_facts) under a new reference; change what you like before triggering."):
    if f"trigger_rehearsal|{playbook.name}" not in st.session_state:  # one ref per session
        st.session_state[f"trigger_rehearsal|{playbook.name}"] = rehearsal_facts(
            playbook, now=utcnow())
    base = st.session_state[f"trigger_rehearsal|{playbook.name}"]
form = build_form(playbook, stage_id, base=base)
form_key = f"{playbook.name}|{chosen.ref if chosen else 'new'}|{stage_id}|" \
           f"{base.content_hash()[:12] if base else ''}"

errors_state = st.session_state.get(ERRORS_KEY)
# a refusal belongs to the form it was typed into: another playbook, incident or stage is clean
refused_form, message, errors = errors_state if errors_state else ("", "", {})
if refused_form != form_key:
    message, errors = "", {}
if message:
    st.error(plain(f"Refused, nothing was stored: {message}"))
for key in ("playbook", "stage"):  # a refused playbook or stage names no fact of the form
    field_errors(errors, key)
show_result()

# -- the form -----------------------------------------------------------------------------------
zones = time_zones()
required = [f for f in form.fields if f.required and not f.path.startswith(
    tuple(f"{s}." for s in form.sections))]
sections = {s: [form.field(p) for p in paths] for s, paths in form.sections.items()}
in_sections = {p for paths in form.sections.values() for p in paths}
optional = [f for f in form.fields if not f.required and f.locale is None
            and f.path not in in_sections]
translations: dict[str, list[FormField]] = {}
for f in form.fields:
    if f.locale is not None:
        translations.setdefault(f.locale, []).append(f)

with st.form(f"trigger_form|{form_key}"):
    st.subheader(f"Facts of {playbook.name} · {stage_id}")
    for f in required:
        draw_field(f, form_key, zones, form.default_zone, errors,
                   locked=chosen is not None and f.path == "incident_ref")
    for section, fields in sections.items():
        with st.expander(f"{section.title()} facts",
                         expanded=True):
            for f in fields:
                draw_field(f, form_key, zones, form.default_zone, errors)
    with st.expander("Optional facts", expanded=any(f.path in errors for f in optional)):
        for f in optional:
            draw_field(f, form_key, zones, form.default_zone, errors)
    for locale, fields in translations.items():
        with st.expander(f"Translations: {locale}",
                         expanded=any(f.path in errors for f in fields)):
            for f in fields:
                draw_field(f, form_key, zones, form.default_zone, errors)
    drill_mode = config.mode == "drill"
    if chosen is not None:
        st.checkbox("Drill", value=chosen.drill, disabled=True, key="trigger_drill_fixed",
                            help="Fixed when the incident was created.")
    else:
        st.checkbox("Drill", value=drill_mode, disabled=drill_mode, key="trigger_drill",
                            help="A rehearsal: provisional template approvals are enough. "
                                 "In drill mode (CRISISCOMMS_MODE=drill) every incident is one.")
    st.form_submit_button("Trigger", type="primary", on_click=do_trigger,
                          args=(form, form_key, chosen.ref if chosen else None))
