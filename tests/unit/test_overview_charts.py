"""The executive overview's charts are valid Vega-Lite (the page skips Altair's validation on
every run, so it is done here, with the same builders) and carry the rows they are given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crisiscomms.dashboard.overview_charts import reach_chart, reactions_chart, vega_lite_spec
from crisiscomms.delivery.views import ReachPoint
from crisiscomms.reactions.trends import TrendBucket

AT = datetime(2026, 11, 23, 9, 45, tzinfo=UTC)


def rows(spec: dict[str, Any], part: dict[str, Any]) -> list[dict[str, Any]]:
    """The data rows of a (layer of a) spec: Altair moves inline values to named datasets."""
    return list(spec["datasets"][part["data"]["name"]])


def test_the_reach_chart_validates_and_holds_every_point() -> None:
    points = [ReachPoint(AT, "email", "planned", 1000), ReachPoint(AT, "x", "sent", 1),
              ReachPoint(AT + timedelta(minutes=5), "email", "delivered", 970)]
    chart = reach_chart(points)
    spec = chart.to_dict(validate=True)  # raises on a schema error
    assert rows(spec, spec)[2] == {"at": "2026-11-23T09:50:00+00:00", "channel": "email",
                                         "measure": "delivered", "recipients": 970}
    assert vega_lite_spec(chart) == spec


def test_the_reactions_chart_validates_and_stacks_only_nonzero_sentiments() -> None:
    trend = [TrendBucket(AT, 5, 3, 0, 1, 1, 2), TrendBucket(AT + timedelta(minutes=5), 0, 0, 0,
                                                            0, 0, 0)]
    chart = reactions_chart(trend)
    spec = chart.to_dict(validate=True)
    bars, line = spec["layer"]
    assert [v["sentiment"] for v in rows(spec, bars)] == ["negative", "positive",
                                                                "unscored"]
    assert [v["need a person"] for v in rows(spec, line)] == [2, 0]
