"""Reactions: the PR lead's view of how people react to an incident's messages.

Volume and sentiment over time, the split by channel and locale, the reactions that need a
person (with triage's reasons), the spikes and whether their alert went out, and the automatic
replies sent (what each said, its ledger state). Spike alerts link here with ``?incident=REF``.
Someone with ``Permission.reply`` (the PR lead) also gets the one action here: answer a flagged
reaction with one of the playbook's pre-approved replies (``reply_form.py``).

Everything is read through ``crisiscomms.reactions.views`` (GROUP BYs in the database, paged
lists), never SQL of the page's own, so issue 12's roles have one place to check access.
Customer text is shown as data (``st.dataframe`` cells), never as HTML or markdown: a tweet
holding ``<script>`` or ``**bold**`` is shown as those characters.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import streamlit as st
from sqlmodel import Session

from crisiscomms.core.spreadsheet import csv_text
from crisiscomms.dashboard.data import engine
from crisiscomms.dashboard.reply_form import reply_form
from crisiscomms.dashboard.session import require
from crisiscomms.identity.roles import Permission
from crisiscomms.reactions.views import (
    automatic_replies,
    flagged,
    listening_incidents,
    over_time,
    per_message,
    spikes,
    summary,
)

user = require(Permission.view_reactions)
st.title("Reactions")

REFRESH_S = 10  # seconds between two refreshes of the view (and how long its reads are shared)
BUCKET_MINUTES = {"1 minute": 1, "5 minutes": 5, "15 minutes": 15, "1 hour": 60}
SENTIMENT_COLOURS = alt.Scale(domain=["negative", "neutral", "positive", "unscored"],
                              range=["#c5221f", "#9aa0a6", "#188038", "#dadce0"])


def _choose_incident() -> str | None:
    with Session(engine()) as session:
        incidents = listening_incidents(session)
    if not incidents:
        st.info("No incidents yet: reactions appear here once an incident's messages are out "
                "and people answer them.")
        return None
    refs = [ref for ref, _, _ in incidents]
    labels = {ref: f"{ref}: {title} ({status})" for ref, title, status in incidents}
    wanted = st.query_params.get("incident")
    index = refs.index(wanted) if wanted in refs else 0
    chosen: str = st.selectbox("Incident", refs, index=index,
                               format_func=lambda ref: labels[ref])
    st.query_params["incident"] = chosen
    return chosen


def _counts_table(counts: dict[str, int], name: str) -> list[dict[str, Any]]:
    return [{name: key, "reactions": value} for key, value in counts.items()]


def _texts(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"received": r.received_at.strftime("%Y-%m-%d %H:%M:%S UTC"), "source": r.source,
             "author": r.author, "locale": r.locale or r.language or "",
             "sentiment": r.sentiment or "", "reasons": ", ".join(r.reasons), "text": r.text,
             "id": r.id} for r in rows]


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def _reads(database: str, ref: str, bucket_minutes: int) -> tuple[Any, ...]:
    """The page's reads, shared by every viewer for ``REFRESH_S`` (an incident with 200,000
    reactions costs seconds of GROUP BY on SQLite: bench/listening_watch.py)."""
    with Session(engine()) as session:
        return (summary(session, ref), over_time(session, ref, bucket_minutes=bucket_minutes),
                flagged(session, ref, limit=100), spikes(session, ref),
                per_message(session, ref), automatic_replies(session, ref))


@st.fragment(run_every=REFRESH_S)
def reactions_view(ref: str, bucket_minutes: int) -> None:
    counts, buckets, flags, found, messages, replies = _reads(str(engine().url), ref,
                                                              bucket_minutes)
    negative = counts.by_sentiment.get("negative", 0)
    left, middle, right, far = st.columns(4)
    left.metric("Reactions", f"{counts.total:,}")
    middle.metric("Need a person", f"{counts.needs_human:,}")
    right.metric("Negative", f"{negative / counts.total:.0%}" if counts.total else "–")
    far.metric("Spikes", len(found))
    if not counts.total:
        st.info("No reactions to this incident yet.")
        return

    st.subheader("Volume and sentiment over time")
    values = [{"start": b.start.isoformat(), "sentiment": b.sentiment, "count": b.count}
              for b in buckets]  # a few hundred buckets at most, aggregated in SQL
    chart = alt.Chart({"values": values}).mark_bar().encode(
        x=alt.X("start:T", title="time (UTC)"),
        y=alt.Y("sum(count):Q", title="reactions"),
        color=alt.Color("sentiment:N", scale=SENTIMENT_COLOURS),
        tooltip=["start:T", "sentiment:N", "sum(count):Q"])
    st.altair_chart(chart, use_container_width=True)

    by_channel, by_locale, by_source = st.columns(3)
    by_channel.caption("By channel")
    by_channel.dataframe(_counts_table(counts.by_channel, "channel"), hide_index=True)
    by_locale.caption("By locale")
    by_locale.dataframe(_counts_table(counts.by_locale, "locale"), hide_index=True)
    by_source.caption("By source")
    by_source.dataframe(_counts_table(counts.by_source, "source"), hide_index=True)

    st.subheader("Spikes")
    if found:
        st.dataframe([{"window (UTC)": s.window_start.strftime("%Y-%m-%d %H:%M"),
                       "channel": s.channel, "locale": s.locale, "reactions": s.volume,
                       "negative": f"{s.negative_share:.0%}",
                       "baseline": f"{s.baseline_volume:.1f} ({s.baseline_negative_share:.0%} "
                                   "negative)",
                       "alert": s.alert_state} for s in found], hide_index=True)
    else:
        st.caption("No spike: volume and negative share are within their baseline.")

    st.subheader("Need a person")
    st.caption("Newest first, with why triage flagged them. Texts exactly as sent.")
    if flags:
        table = _texts(flags)
        st.dataframe(table, hide_index=True,
                     column_config={"text": st.column_config.TextColumn(width="large")})
        st.download_button("Download as CSV", csv_text(list(table[0]), [
            list(row.values()) for row in table]), file_name=f"{ref}-need-a-person.csv",
            mime="text/csv", help="Formulas neutralised: safe to open in a spreadsheet")
    else:
        st.caption("Nothing flagged.")

    if replies:
        st.subheader("Automatic replies")
        st.caption("Pre-approved answers sent by the watcher, once per person (newest first).")
        st.dataframe([{"sent (UTC)": r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                       "to": r.author, "rule": r.rule, "channel": r.channel,
                       "locale": r.locale, "state": r.state, "error": r.error or "",
                       "text": r.text} for r in replies], hide_index=True)

    if messages:
        st.subheader("By message answered")
        st.dataframe([{"stage": m.stage, "channel": m.channel, "locale": m.locale,
                       "reactions": m.total, "negative": m.negative,
                       "need a person": m.needs_human} for m in messages], hide_index=True)


chosen = _choose_incident()
if chosen is not None:
    bucket = st.segmented_control("Buckets", list(BUCKET_MINUTES), default="5 minutes") \
        or "5 minutes"
    reactions_view(chosen, BUCKET_MINUTES[bucket])
    if user.may(Permission.reply):  # the one action here: a pre-approved reply (reply_form.py)
        reply_form(chosen)
