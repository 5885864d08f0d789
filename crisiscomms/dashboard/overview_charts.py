"""The executive overview's Altair charts, built from the domain views' rows.

Why a module of its own: the charts are checked against the Vega-Lite schema once, by a unit
test (``tests/unit/test_overview_charts.py``), instead of on every page run. Altair validates
each channel as it is built and the whole spec again in ``to_dict``: about 100 ms a page run
for two small charts, more than every query of the page together. The page builds them with
Altair's debug validation off and hands Streamlit the unvalidated spec
(:func:`vega_lite_spec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
from altair.utils.schemapi import debug_mode

from crisiscomms.delivery.views import MEASURES, ReachPoint
from crisiscomms.reactions.trends import SENTIMENTS, TrendBucket

SENTIMENT_COLOURS = ("#d62728", "#9e9e9e", "#2ca02c", "#dddddd")
"""negative, neutral, positive, unscored."""


def reach_chart(points: Sequence[ReachPoint]) -> alt.Chart:
    """Cumulative recipients per measure over time, one row per channel."""
    values = [{"at": p.at.isoformat(), "channel": p.channel, "measure": p.measure,
               "recipients": p.count} for p in points]
    with debug_mode(False):
        chart: alt.Chart = alt.Chart({"values": values}).mark_line(
            point=True, interpolate="step-after").encode(
            x=alt.X("at:T", title=None),
            y=alt.Y("recipients:Q", title="recipients (cumulative)"),
            color=alt.Color("measure:N", sort=list(MEASURES)),
            row=alt.Row("channel:N", title=None),
            tooltip=["channel:N", "measure:N", "recipients:Q",
                     alt.Tooltip("at:T", format="%H:%M")],
        ).properties(height=160)
    return chart


def reactions_chart(trend: Sequence[TrendBucket]) -> alt.LayerChart | alt.FacetChart:
    """Reactions per bucket stacked by sentiment, with the needs-a-human count as a line."""
    bars = [{"start": b.start.isoformat(), "sentiment": s, "reactions": getattr(b, s)}
            for b in trend for s in SENTIMENTS if getattr(b, s)]
    flags = [{"start": b.start.isoformat(), "need a person": b.needs_human} for b in trend]
    with debug_mode(False):
        stacked = alt.Chart({"values": bars}).mark_bar().encode(
            x=alt.X("start:T", title=None), y=alt.Y("reactions:Q", stack=True),
            color=alt.Color("sentiment:N", scale=alt.Scale(domain=list(SENTIMENTS),
                                                            range=list(SENTIMENT_COLOURS))),
            tooltip=["sentiment:N", "reactions:Q", alt.Tooltip("start:T", format="%H:%M")])
        line = alt.Chart({"values": flags}).mark_line(color="black", point=True).encode(
            x="start:T", y=alt.Y("need a person:Q"),
            tooltip=["need a person:Q", alt.Tooltip("start:T", format="%H:%M")])
        return alt.layer(stacked, line).properties(height=220)


def vega_lite_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec, without Altair's schema validation (the unit test
    validates the same builders)."""
    with debug_mode(False):
        return chart.to_dict(validate=False)
