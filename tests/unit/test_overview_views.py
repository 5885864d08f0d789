"""The executive overview's views on SQLite and PostgreSQL against rows whose numbers are
known: incidents timed at a glance (drills left out unless asked), reach per channel and over
time, the reaction trend and CSAT."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from crisiscomms.delivery.models import Delivery, DeliveryEventRollup
from crisiscomms.delivery.views import reach, reach_over_time
from crisiscomms.incident.metrics import incidents_at_a_glance
from crisiscomms.incident.models import FactSheetVersion, Incident, Message
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment
from crisiscomms.reactions.trends import csat, reaction_trend

T0 = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)


def fill(engine: Engine) -> None:
    with Session(engine) as session:
        live = Incident(ref="LIVE-1", playbook="outage", title="Live", severity="major",
                        status="identified", created_at=T0)
        drill = Incident(ref="DRILL-1", playbook="outage", title="Drill", severity="minor",
                         drill=True, created_at=T0 + timedelta(hours=1))
        session.add_all([live, drill])
        session.flush()
        assert live.id is not None and drill.id is not None
        for version, due in ((1, T0 + timedelta(minutes=30)), (2, T0 + timedelta(hours=2))):
            session.add(FactSheetVersion(
                incident_id=live.id, version=version, facts_hash=f"h{version}", created_by="t",
                facts_json=json.dumps({"started_at": T0.isoformat(),
                                       "next_update_at": due.isoformat()})))
        session.add(FactSheetVersion(incident_id=live.id, version=3, facts_hash="h3",
                                     created_by="t", facts_json=json.dumps(
                                         {"started_at": T0.isoformat(),
                                          "next_update_at": "2030-01-01T00:00:00+00:00"})))
        messages = {}
        for version, channel in ((1, "email"), (1, "x"), (2, "email"), (3, "email")):
            m = Message(incident_id=live.id, stage=f"s{version}", facts_version=version,
                        channel=channel, locale="en", parts_json="{}", content_hash="c",
                        template_hashes_json="{}")
            session.add(m)
            session.flush()
            messages[(version, channel)] = m.id
        rows = [  # (message, channel, batch, recipients, state, minutes after T0)
            ((1, "email"), "email", 0, 1000, "sent", 4), ((1, "email"), "email", 1, 500,
                                                         "failed", 6),
            ((1, "x"), "x", 0, 1, "sent", 2), ((2, "email"), "email", 2, 1000, "sent", 50),
            ((3, "email"), "email", 3, 1000, "planned", 60)]  # version 3 not published yet
        for key, channel, batch, n, state, minutes in rows:
            session.add(Delivery(key=f"k{batch}{channel}", incident_id=live.id,
                                 message_id=messages[key], channel=channel, locale="en",
                                 batch_no=batch, recipient_count=n, state=state,
                                 created_at=T0 + timedelta(minutes=1),
                                 updated_at=T0 + timedelta(minutes=minutes)))
        for event, minute, n in (("delivered", 5, 900), ("delivered", 11, 50), ("open", 9, 300),
                                 ("bounce", 5, 20), ("processed", 5, 1000)):
            session.add(DeliveryEventRollup(incident_id=live.id, channel="email", event=event,
                                            minute=T0 + timedelta(minutes=minute), count=n))
        for n, (sentiment, minutes, flagged) in enumerate(
                [("negative", 1, True), ("negative", 2, False), ("positive", 3, False),
                 (None, 7, False), ("neutral", 8, True)]):
            session.add(Reaction(source=ReactionSource.x_mention, source_id=str(n),
                                 incident_id=live.id, author="a", text="t",
                                 sentiment=Sentiment(sentiment) if sentiment else None,
                                 needs_human=flagged,
                                 received_at=T0 + timedelta(minutes=minutes)))
        for n, rating in enumerate((5, 5, 4, 1)):
            session.add(Reaction(source=ReactionSource.csat, source_id=f"c{n}",
                                 incident_id=live.id, author="r", rating=rating,
                                 sentiment=Sentiment.positive if rating > 3
                                 else Sentiment.negative,
                                 received_at=T0 + timedelta(minutes=20)))
        session.add(Reaction(source=ReactionSource.csat, source_id="other", author="r",
                             incident_id=drill.id, rating=1, received_at=T0))
        session.commit()


def test_the_overview_views_give_the_known_numbers(backend_engine: Engine) -> None:
    fill(backend_engine)
    with Session(backend_engine) as session:
        glance = incidents_at_a_glance(session)
        assert [g.ref for g in glance] == ["LIVE-1"]
        live = glance[0]
        assert live.time_to_first_ack == timedelta(minutes=2)  # the X post at +2 min
        assert live.time_to_resolution is None
        # the newest *published* sheet is version 2 (version 3 is only planned)
        assert live.next_update_at == T0 + timedelta(hours=2)
        assert live.overdue(T0 + timedelta(hours=3)) and not live.overdue(T0)
        assert [g.ref for g in incidents_at_a_glance(session, include_drills=True)] == [
            "DRILL-1", "LIVE-1"]

        by_channel = {r.channel: r for r in reach(session, live.id)}
        email = by_channel["email"]
        assert (email.planned, email.sent, email.failed) == (3500, 2000, 500)
        assert (email.delivered, email.opened, email.bounced) == (950, 300, 20)
        assert (by_channel["x"].planned, by_channel["x"].sent) == (1, 1)

        points = reach_over_time(session, live.id, bucket_minutes=5)
        last = {(p.channel, p.measure): p.count for p in points}
        assert last[("email", "delivered")] == 950 and last[("email", "sent")] == 2000
        delivered = [(p.at, p.count) for p in points
                     if (p.channel, p.measure) == ("email", "delivered")]
        assert delivered == [(T0 + timedelta(minutes=10), 900),  # 09:45-09:50 bucket
                             (T0 + timedelta(minutes=15), 950)]

        trend = reaction_trend(session, live.id, bucket_minutes=5)
        assert [(b.start, b.volume, b.negative, b.positive, b.neutral, b.unscored,
                 b.needs_human) for b in trend] == [
            (T0, 3, 2, 1, 0, 0, 1),  # 09:40-09:45: the first three
            (T0 + timedelta(minutes=5), 2, 0, 0, 1, 1, 1),
            (T0 + timedelta(minutes=20), 4, 1, 3, 0, 0, 0)]  # the ratings

        score = csat(session, live.id)
        assert (score.ratings, score.satisfied_share, score.mean) == (4, 0.75, 3.75)
        assert score.by_rating == {1: 1, 2: 0, 3: 0, 4: 1, 5: 2}
