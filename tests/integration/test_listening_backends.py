"""The listening aggregates (spike windows, volume over time, counts) are dialect-specific SQL:
the same answers on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crisiscomms.incident.models import Incident
from crisiscomms.playbook.listening import SpikePolicy
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment
from crisiscomms.reactions.spikes import detect_spikes
from crisiscomms.reactions.views import flagged, over_time, reactions, spikes, summary

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 10, 7, 30, tzinfo=UTC)
POLICY = SpikePolicy(window_minutes=5, baseline_windows=6, volume_ratio=3.0, min_volume=10,
                     negative_share=0.6)


def test_windows_spikes_and_counts_agree_on_both_backends(backend_engine: Engine) -> None:
    with Session(backend_engine) as session:
        incident = Incident(ref="INC-PG", playbook="outage", title="Outage", severity="major")
        session.add(incident)
        session.commit()
        assert incident.id is not None
        rows = []
        # a calm baseline: 2 neutral reactions per window for 30 minutes
        for minute in range(10, 40, 5):
            for k in range(2):
                rows.append(("en", Sentiment.neutral, NOW - timedelta(minutes=minute, seconds=k)))
        # the storm: 15 in the current window (10:05-10:10), 11 negative, in German
        for k in range(15):
            rows.append(("de", Sentiment.negative if k < 11 else Sentiment.positive,
                         NOW - timedelta(seconds=10 + k)))
        for i, (locale, sentiment, at) in enumerate(rows):
            session.add(Reaction(source=ReactionSource.x_mention, source_id=f"s{i}",
                                 incident_id=incident.id, channel="x", locale=locale,
                                 author=f"@a{i}", text=f"text {i} \x1b[31m<b>",
                                 sentiment=sentiment, needs_human=i == len(rows) - 1,
                                 reasons_json=json.dumps(["press: journalist"])
                                 if i == len(rows) - 1 else "[]",
                                 received_at=at))
        session.commit()

        created = detect_spikes(session, incident.id, POLICY, now=NOW)
        assert [(s.channel, s.locale, s.volume) for s in created] == [("x", "de", 15)]
        assert created[0].negative_share == pytest.approx(11 / 15, abs=1e-4)
        assert detect_spikes(session, incident.id, POLICY, now=NOW) == []
        shown = spikes(session, "INC-PG")
        assert shown[0].window_start == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
        assert shown[0].alert_state.startswith("alert pending")

        buckets = over_time(session, "INC-PG", bucket_minutes=5)
        by_start: dict[datetime, int] = {}
        for b in buckets:
            by_start[b.start] = by_start.get(b.start, 0) + b.count
        assert sum(by_start.values()) == len(rows)
        assert by_start[datetime(2026, 12, 1, 10, 5, tzinfo=UTC)] == 15
        assert all(b.start.minute % 5 == 0 and b.start.second == 0 for b in buckets)

        counts = summary(session, "INC-PG")
        assert counts.total == len(rows) and counts.needs_human == 1
        assert counts.by_locale == {"de": 15, "en": 12}
        assert counts.by_sentiment == {"neutral": 12, "negative": 11, "positive": 4}
        assert [r.reasons for r in flagged(session, "INC-PG")] == [("press: journalist",)]

        page = reactions(session, incident_ref="INC-PG", limit=10)
        older = reactions(session, incident_ref="INC-PG", limit=10, before_id=page[-1].id)
        assert len(page) == 10 and older[0].id < page[-1].id
        assert page[0].text.endswith("\x1b[31m<b>")  # stored as sent; faces escape it
