"""The executive overview: how the incidents, the rollout and the public's reaction are going.

Read-only (``Permission.view_executive``). Incidents at a glance (drills left out unless the
toggle includes them), each timed: start to first message out, start to resolution, the next
update due (overdue in red). For one incident: reach per channel as it rolls out (planned, sent,
delivered, opened, bounced, failed) in total and over time; reactions' volume, sentiment and
needs-a-human over time; spikes; CSAT. The figures refresh themselves every
``dashboard_overview_refresh_s`` seconds (``st.fragment(run_every=...)``) from aggregates
cached for that interval (``overview_cache.py``), read through the domain's views; the Altair
charts come from ``overview_charts.py``. Customer text never appears here, only counts.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from crisiscomms.channels.registry import in_lane
from crisiscomms.core.clock import utcnow
from crisiscomms.dashboard import overview_cache as cached
from crisiscomms.dashboard.data import settings
from crisiscomms.dashboard.overview_charts import reach_chart, reactions_chart, vega_lite_spec
from crisiscomms.dashboard.reader import duration, reader_zone, when
from crisiscomms.dashboard.session import require
from crisiscomms.delivery.contract import Lane
from crisiscomms.delivery.views import MEASURES
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.metrics import IncidentGlance

BUCKETS = {"1 min": 1, "5 min": 5, "15 min": 15, "1 h": 60}


def due_text(row: IncidentGlance, tz: ZoneInfo, now: datetime) -> str:
    if row.next_update_at is None:
        return "—"
    text = when(row.next_update_at, tz, now)
    return f"OVERDUE {text}" if row.overdue(now) else text


def glance_table(rows: list[IncidentGlance], tz: ZoneInfo,
                 now: datetime) -> list[dict[str, object]]:
    return [{
        "incident": r.ref, "title": r.title, "severity": r.severity, "status": r.status,
        "drill": r.drill,
        "started": when(r.started_at, tz, now) if r.started_at else "—",
        "first message out": duration(r.time_to_first_ack),
        "resolved after": duration(r.time_to_resolution),
        "next update due": due_text(r, tz, now)} for r in rows]


def reach_section(url: str, row: IncidentGlance, bucket: int, tick: int) -> None:
    st.subheader("Reach")
    totals = cached.channel_reach(url, row.id, tick)
    if not totals:
        st.info("Nothing planned for this incident yet.")
        return
    personal = set(in_lane(Lane.fan_out))  # the people reached one by one (email)
    people = [r for r in totals if r.channel in personal]
    if people:  # the headline figures
        for column, measure in zip(st.columns(len(MEASURES)), MEASURES, strict=True):
            column.metric(f"People {measure}", f"{sum(getattr(r, measure) for r in people):,}",
                          help=f"{measure} over {', '.join(sorted(personal))}")
    st.dataframe([{"channel": r.channel, **{m: getattr(r, m) for m in MEASURES}}
                  for r in totals], hide_index=True)
    points = cached.reach_timeline(url, row.id, bucket, tick)
    if points:
        st.vega_lite_chart(vega_lite_spec(reach_chart(points)), width="stretch")


def reactions_section(url: str, row: IncidentGlance, bucket: int, tick: int) -> None:
    st.subheader("Reactions")
    trend = cached.reactions_timeline(url, row.id, bucket, tick)
    satisfaction = cached.satisfaction(url, row.id, tick)
    volume = sum(b.volume for b in trend)
    negative = sum(b.negative for b in trend)
    flagged = sum(b.needs_human for b in trend)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Reactions", f"{volume:,}")
    c2.metric("Negative", f"{negative / volume:.0%}" if volume else "—")
    c3.metric("Need a person", f"{flagged:,}")
    c4.metric("CSAT (4–5 of 5)",
              f"{satisfaction.satisfied_share:.0%}" if satisfaction.satisfied_share is not None
              else "—",
              help=(f"{satisfaction.ratings} ratings, mean {satisfaction.mean:.2f}"
                    if satisfaction.mean is not None else "No ratings yet"))
    if trend:
        st.vega_lite_chart(vega_lite_spec(reactions_chart(trend)), width="stretch")
    if satisfaction.ratings:
        st.caption("CSAT ratings: " + " · ".join(
            f"{r}★ {n}" for r, n in sorted(satisfaction.by_rating.items())))
    found = cached.incident_spikes(url, row.ref, tick)
    st.markdown(f"**Spikes**: {len(found)}")
    if found:
        st.dataframe([{
            "window": s.window_start, "channel": s.channel, "locale": s.locale,
            "reactions": s.volume, "negative": f"{s.negative_share:.0%}",
            "baseline": round(s.baseline_volume, 1),
            "baseline negative": f"{s.baseline_negative_share:.0%}", "alert": s.alert_state}
            for s in found], hide_index=True)


user = require(Permission.view_executive)
st.title("Overview")
current = settings()
refresh = current.dashboard_overview_refresh_s
include_drills = st.toggle("Include drills", value=False, key="include_drills")
bucket_label = st.segmented_control("Time buckets", list(BUCKETS), default="5 min",
                                    key="bucket") or "5 min"


@st.fragment(run_every=refresh)
def overview(include_drills: bool, bucket: int) -> None:
    url, tick = current.resolved_database_url, cached.tick(refresh)
    tz, now = reader_zone(), utcnow()
    rows = cached.glance(url, include_drills, tick)
    st.caption(f"Refreshes every {refresh} s · times in {tz.key}")
    if not rows:
        st.info("No incidents." if include_drills else
                "No incidents (drills are hidden: turn on Include drills to see them).")
        return
    st.subheader("Incidents at a glance")
    st.dataframe(glance_table(rows, tz, now), hide_index=True)
    overdue = [r.ref for r in rows if r.overdue(now)]
    if overdue:
        st.error(f"Next update overdue: {', '.join(overdue)}")
    refs = [r.ref for r in rows]
    chosen = st.selectbox("Incident", refs, key="incident")
    row = rows[refs.index(chosen)] if chosen in refs else rows[0]
    c1, c2, c3 = st.columns(3)
    c1.metric("Start → first message out", duration(row.time_to_first_ack))
    c2.metric("Start → resolution", duration(row.time_to_resolution))
    c3.metric("Next update due", due_text(row, tz, now) if row.next_update_at else
              ("resolved" if row.resolved_at else "not promised"))
    reach_section(url, row, bucket, tick)
    reactions_section(url, row, bucket, tick)


overview(include_drills, BUCKETS[bucket_label])
