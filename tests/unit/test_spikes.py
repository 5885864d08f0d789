"""Spike maths (windows against a rolling baseline) and the SQL that counts the windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.incident.models import Incident
from crisiscomms.playbook.listening import SpikePolicy
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment, Spike
from crisiscomms.reactions.spikes import WindowCount, detect_spikes, find_spikes, judge

POLICY = SpikePolicy(window_minutes=5, baseline_windows=4, volume_ratio=3.0, min_volume=10,
                     negative_share=0.6)


def w(bucket: int, volume: int, negative: int = 0, channel: str = "x",
      locale: str = "en") -> WindowCount:
    return WindowCount(channel, locale, bucket, volume, negative)


def test_volume_against_the_mean_of_the_baseline_windows_missing_ones_count_zero() -> None:
    # baseline: 8 + 0 + 0 + 4 over 4 windows = mean 3; 9 = 3 x 3 but under min_volume
    assert judge(w(10, 9), [w(6, 8), w(9, 4)], POLICY) is None
    found = judge(w(10, 10), [w(6, 8), w(9, 4)], POLICY)
    assert found is not None and found.baseline_volume == 3.0
    assert found.reasons == ("volume 10 vs baseline 3.0",)
    # a busier baseline: 10 is not three times 5
    assert judge(w(10, 10), [w(6, 10), w(7, 10)], POLICY) is None


def test_a_first_burst_on_a_quiet_channel_is_a_spike() -> None:
    found = judge(w(10, 12), [], POLICY)
    assert found is not None and found.baseline_volume == 0


def test_negative_share_breaks_from_a_calmer_baseline_only() -> None:
    calm = [w(b, 10, 1) for b in range(6, 10)]  # 10 % negative, mean volume 10
    found = judge(w(10, 12, 8), calm, POLICY)   # volume x1.2 but 67 % negative
    assert found is not None and found.reasons == ("negative share 67% vs baseline 10%",)
    angry = [w(b, 10, 7) for b in range(6, 10)]  # negative all along: not a new storm
    assert judge(w(10, 12, 8), angry, POLICY) is None
    assert judge(w(10, 12, 7), calm, POLICY) is None  # 58 %: under the share


def test_each_channel_and_locale_is_its_own_series_and_only_recent_windows_are_judged() -> None:
    counts = [w(7, 30), w(8, 30), w(9, 30), w(9, 30, locale="de"), w(8, 30, channel="email")]
    found = find_spikes(counts, POLICY, judged_from=9)
    assert sorted((f.channel, f.locale, f.bucket) for f in found) == [("x", "de", 9)]


def _incident(session: Session) -> int:
    incident = Incident(ref="INC-1", playbook="outage", title="Outage", severity="major")
    session.add(incident)
    session.commit()
    assert incident.id is not None
    return incident.id


def test_detect_spikes_counts_in_sql_stores_once_with_examples(engine: Engine) -> None:
    now = datetime(2026, 12, 1, 10, 7, tzinfo=UTC)  # window 10:05-10:10
    with Session(engine) as session:
        incident_id = _incident(session)
        for i in range(12):
            bad = i < 8
            session.add(Reaction(
                source=ReactionSource.x_mention, source_id=f"t{i}", incident_id=incident_id,
                channel="x", locale="en", author=f"@u{i}", text=f"<b>down</b> {i}",
                sentiment=Sentiment.negative if bad else Sentiment.neutral,
                score=-0.9 if bad else 0.0, needs_human=i == 11,
                reasons_json='["complaint: still"]' if i == 11 else "[]",
                received_at=now - timedelta(seconds=60 + i)))
        # a quiet baseline in an earlier window, and one reaction of another incident
        session.add(Reaction(source=ReactionSource.x_mention, source_id="old",
                             incident_id=incident_id, channel="x", locale="en", author="@o",
                             text="ok", received_at=now - timedelta(minutes=20)))
        session.commit()
        created = detect_spikes(session, incident_id, POLICY, now=now)
        assert len(created) == 1
        spike = created[0]
        assert (spike.channel, spike.locale, spike.volume) == ("x", "en", 12)
        assert spike.window_start.replace(tzinfo=UTC) == datetime(2026, 12, 1, 10, 5,
                                                                   tzinfo=UTC)
        assert abs(spike.baseline_volume - 0.25) < 1e-9
        import json

        examples = json.loads(spike.examples_json)
        assert examples[0]["needs_human"] is True and examples[0]["text"] == "<b>down</b> 11"
        assert [e["sentiment"] for e in examples[1:]] == ["negative", "negative"]
        # detected again (next run): nothing new
        assert detect_spikes(session, incident_id, POLICY, now=now + timedelta(minutes=1)) == []
        assert len(session.exec(select(Spike)).all()) == 1
