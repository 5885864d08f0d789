"""Spikes: when reaction to an incident turns into a storm, per channel and locale.

Time is cut into windows of ``listening.spikes.window_minutes`` (aligned on the epoch, so every
process and every run cuts the same windows). For each (channel, locale) a window is compared
with the ``baseline_windows`` windows before it (a window without reactions counts as zero):

- **volume**: at least ``min_volume`` reactions and ``volume_ratio`` times the baseline's mean
  (a first burst of ``min_volume`` on a quiet channel is a spike: its baseline is zero);
- **negative share**: at least ``min_volume`` reactions of which ``negative_share`` or more are
  negative, while the baseline was below that share (a channel negative all along is one storm,
  not a new one every window).

The counts come from one GROUP BY over ``reaction`` per incident (channel, locale, window):
rows are never loaded to be counted. A spike is a :class:`Spike` row, unique per (incident,
channel, locale, window): detecting it again changes nothing, so it is alerted once.

Why the current (unfinished) window is judged too: a storm should reach the PR lead while it
grows, not five minutes later; the row's uniqueness keeps it to one alert.

The domain decides *what* to say (:class:`SpikeAlert`, with the top examples); sending it over
email and Slack/Teams webhooks is channel work (``crisiscomms/channels/alerts.py``), called by
the faces through :func:`alert_pending`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Integer, case, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from crisiscomms.core.clock import as_utc, utcnow
from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.models import Incident
from crisiscomms.playbook.listening import SpikePolicy
from crisiscomms.reactions.models import Reaction, Sentiment, Spike

EXAMPLES = 3
"""Examples carried by an alert (negative and needs-a-human first)."""
WATCHER = "crisiscomms-watch"
"""The actor of what the watcher records in the audit trail (alerts, automatic replies)."""
UNKNOWN = "und"
"""The locale of a reaction whose message and language are both unknown (BCP 47's
"undetermined")."""


# -- the maths (pure, unit-tested) ------------------------------------------------------------


@dataclass(frozen=True)
class WindowCount:
    """Reactions of one (channel, locale) in one window; ``bucket`` is the window's number
    since the epoch (``window_start = bucket * window``)."""

    channel: str
    locale: str
    bucket: int
    volume: int
    negative: int

    @property
    def negative_share(self) -> float:
        return self.negative / self.volume if self.volume else 0.0


@dataclass(frozen=True)
class Finding:
    """A window that broke from its baseline, and why."""

    channel: str
    locale: str
    bucket: int
    volume: int
    negative_share: float
    baseline_volume: float
    baseline_negative_share: float
    reasons: tuple[str, ...]


def judge(window: WindowCount, baseline: Sequence[WindowCount], policy: SpikePolicy
          ) -> Finding | None:
    """Is ``window`` a spike against ``baseline`` (the counts of the previous
    ``policy.baseline_windows`` windows that had reactions; the missing ones count as zero)?"""
    if window.volume < policy.min_volume:
        return None
    n = policy.baseline_windows
    base_volume = sum(w.volume for w in baseline) / n
    base_negative = sum(w.negative for w in baseline)
    base_volume_total = sum(w.volume for w in baseline)
    base_share = base_negative / base_volume_total if base_volume_total else 0.0
    reasons = []
    if window.volume >= policy.volume_ratio * base_volume:
        reasons.append(f"volume {window.volume} vs baseline {base_volume:.1f}")
    if window.negative_share >= policy.negative_share and base_share < policy.negative_share:
        reasons.append(f"negative share {window.negative_share:.0%} vs baseline "
                       f"{base_share:.0%}")
    if not reasons:
        return None
    return Finding(window.channel, window.locale, window.bucket, window.volume,
                   window.negative_share, base_volume, base_share, tuple(reasons))


def find_spikes(counts: Iterable[WindowCount], policy: SpikePolicy, *,
                judged_from: int) -> list[Finding]:
    """Every window numbered ``judged_from`` or later that is a spike, each against the
    ``baseline_windows`` windows before it (of the same channel and locale)."""
    by_series: dict[tuple[str, str], dict[int, WindowCount]] = defaultdict(dict)
    for c in counts:
        by_series[(c.channel, c.locale)][c.bucket] = c
    found: list[Finding] = []
    for series in by_series.values():
        for bucket in sorted(b for b in series if b >= judged_from):
            baseline = [series[b] for b in range(bucket - policy.baseline_windows, bucket)
                        if b in series]
            finding = judge(series[bucket], baseline, policy)
            if finding is not None:
                found.append(finding)
    return found


# -- the counts, in SQL -----------------------------------------------------------------------


def _channel() -> ColumnElement[Any]:
    return func.coalesce(col(Reaction.channel), col(Reaction.source))


def _locale() -> ColumnElement[Any]:
    return func.coalesce(col(Reaction.locale), col(Reaction.language), UNKNOWN)


def window_bucket(dialect: str, width_s: int) -> ColumnElement[Any]:
    """The window number of ``reaction.received_at`` (seconds since the epoch // width), in
    the database's own date arithmetic."""
    if dialect == "postgresql":
        return func.floor(func.extract("epoch", col(Reaction.received_at)) / width_s)
    seconds = cast(func.strftime("%s", col(Reaction.received_at)), Integer)
    return seconds // width_s  # SQLite: integer division (times are after 1970)


def bucket_start(bucket: int, width_s: int) -> datetime:
    return datetime.fromtimestamp(bucket * width_s, UTC)


def window_counts(session: Session, incident_id: int, policy: SpikePolicy, *,
                  since: datetime, until: datetime | None = None) -> list[WindowCount]:
    """Reactions per (channel, locale, window) of an incident received in [since, until):
    one GROUP BY, served by the (incident_id, received_at) index."""
    width = policy.window_minutes * 60
    # grouped by the expressions themselves (the same objects, so the same bound
    # parameters): PostgreSQL reads GROUP BY "channel" as the column, not the alias
    channel, locale = _channel(), _locale()
    bucket = window_bucket(session.get_bind().dialect.name, width)
    negative = func.sum(case((col(Reaction.sentiment) == Sentiment.negative.value, 1), else_=0))
    conditions = [col(Reaction.incident_id) == incident_id, col(Reaction.received_at) >= since]
    if until is not None:
        conditions.append(col(Reaction.received_at) < until)
    stmt = (select(channel, locale, bucket, func.count(), negative)
            .where(*conditions).group_by(channel, locale, bucket))
    return [WindowCount(str(ch), str(loc), int(b), int(v), int(n or 0))
            for ch, loc, b, v, n in session.execute(stmt)]


# -- detection: findings become Spike rows ------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One reaction shown in an alert (text as sent: each format escapes it)."""

    reaction_id: int
    source: str
    author: str
    text: str
    sentiment: str | None
    needs_human: bool
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"reaction_id": self.reaction_id, "source": self.source, "author": self.author,
                "text": self.text, "sentiment": self.sentiment,
                "needs_human": self.needs_human, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Example:
        return cls(int(raw["reaction_id"]), str(raw["source"]), str(raw["author"]),
                   str(raw["text"]), raw.get("sentiment"), bool(raw.get("needs_human")),
                   tuple(raw.get("reasons") or ()))


def top_examples(session: Session, incident_id: int, channel: str, locale: str,
                 start: datetime, end: datetime, limit: int = EXAMPLES) -> list[Example]:
    """The window's most telling reactions: needing a human first, then negative, then the
    most negative score, newest first among equals (at most ``limit`` rows are read)."""
    negative_first = case((col(Reaction.sentiment) == Sentiment.negative.value, 0), else_=1)
    stmt = (select(Reaction)
            .where(col(Reaction.incident_id) == incident_id, _channel() == channel,
                   _locale() == locale, col(Reaction.received_at) >= start,
                   col(Reaction.received_at) < end)
            .order_by(col(Reaction.needs_human).desc(), negative_first,
                      func.coalesce(col(Reaction.score), 0.0), col(Reaction.received_at).desc())
            .limit(limit))
    return [Example(r.id or 0, str(r.source), r.author, r.text,
                    str(r.sentiment) if r.sentiment is not None else None, r.needs_human,
                    tuple(json.loads(r.reasons_json or "[]")))
            for r in session.execute(stmt).scalars()]


def _insert_spike(session: Session, values: dict[str, Any]) -> int | None:
    """Insert one Spike row unless its window has one already; its id when inserted (from
    RETURNING: a skipped insert's rowcount is not reliable across drivers)."""
    dialect = session.get_bind().dialect.name
    index = ["incident_id", "channel", "locale", "window_start"]
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(Spike).on_conflict_do_nothing(index_elements=index)
    else:
        stmt = sqlite.insert(Spike).on_conflict_do_nothing(index_elements=index)
    found = session.execute(stmt.values(**values).returning(col(Spike.id))).scalar()
    return int(found) if found is not None else None


def detect_spikes(session: Session, incident_id: int, policy: SpikePolicy, *,
                  now: datetime | None = None, judge_windows: int = 2) -> list[Spike]:
    """Judge the last ``judge_windows`` windows up to ``now`` (the current one and the one
    before, so a window that only became a spike after the last run is not missed) and store
    the new spikes; answers the Spike rows created by this call (none when they exist)."""
    now = as_utc(now or utcnow())
    width = policy.window_minutes * 60
    current = int(now.timestamp()) // width
    judged_from = current - judge_windows + 1
    since = bucket_start(judged_from - policy.baseline_windows, width)
    counts = window_counts(session, incident_id, policy, since=since)
    created: list[Spike] = []
    for f in find_spikes(counts, policy, judged_from=judged_from):
        start = bucket_start(f.bucket, width)
        examples = top_examples(session, incident_id, f.channel, f.locale, start,
                                start + timedelta(seconds=width))
        values = dict(incident_id=incident_id, channel=f.channel, locale=f.locale,
                      window_start=start, volume=f.volume,
                      negative_share=round(f.negative_share, 4),
                      baseline_volume=round(f.baseline_volume, 4),
                      baseline_negative_share=round(f.baseline_negative_share, 4),
                      examples_json=json.dumps([e.as_dict() for e in examples],
                                               ensure_ascii=False),
                      created_at=utcnow())
        spike_id = _insert_spike(session, values)
        if spike_id is not None:
            spike = session.get(Spike, spike_id)
            assert spike is not None
            created.append(spike)
    session.commit()
    return created


# -- alerts: what to say, and who says it ----------------------------------------------------------


@dataclass(frozen=True)
class SpikeAlert:
    """Everything an alert says about one spike: no secret, texts as sent (each format
    escapes them)."""

    spike_id: int
    incident_ref: str
    incident_title: str
    channel: str
    locale: str
    window_start: datetime
    window_minutes: int
    volume: int
    negative_share: float
    baseline_volume: float
    baseline_negative_share: float
    examples: tuple[Example, ...]
    link: str | None
    """The dashboard's reactions page for the incident (None: no dashboard URL configured)."""

    @property
    def headline(self) -> str:
        return (f"Reaction spike on {self.channel} ({self.locale}) for incident "
                f"{self.incident_ref}: {self.volume} reactions in {self.window_minutes} min, "
                f"{self.negative_share:.0%} negative")

    @property
    def comparison(self) -> str:
        return (f"Baseline: {self.baseline_volume:.1f} reactions per window, "
                f"{self.baseline_negative_share:.0%} negative. Window from "
                f"{self.window_start:%Y-%m-%d %H:%M} UTC.")


class AlertTarget(Protocol):
    """One place alerts go (email, Slack, Teams): ``channels/alerts.py`` implements it."""

    @property
    def name(self) -> str:
        """The target's name in the audit trail (``email``, ``slack``, ``teams``)."""
        ...

    def send(self, alert: SpikeAlert) -> None:
        """Deliver the alert or raise (the reason must carry no secret)."""
        ...


@dataclass
class AlertReport:
    sent: list[str] = field(default_factory=list)
    """``"<spike id> <target>"`` for each delivery made in this run."""
    failed: list[str] = field(default_factory=list)
    """The reasons of the deliveries that failed (retried next run)."""
    alerted: int = 0
    """Spikes whose every target has now had the alert."""


def reactions_link(dashboard_url: str | None, incident_ref: str) -> str | None:
    """The dashboard's reactions page of an incident (``?incident=REF``)."""
    if not dashboard_url:
        return None
    from urllib.parse import quote

    return f"{dashboard_url.rstrip('/')}/reactions?incident={quote(incident_ref, safe='')}"


def alert_of(spike: Spike, incident: Incident, policy: SpikePolicy,
             dashboard_url: str | None) -> SpikeAlert:
    examples = tuple(Example.from_dict(e) for e in json.loads(spike.examples_json or "[]"))
    return SpikeAlert(
        spike_id=spike.id or 0, incident_ref=incident.ref, incident_title=incident.title,
        channel=spike.channel, locale=spike.locale, window_start=as_utc(spike.window_start),
        window_minutes=policy.window_minutes, volume=spike.volume,
        negative_share=spike.negative_share, baseline_volume=spike.baseline_volume,
        baseline_negative_share=spike.baseline_negative_share, examples=examples,
        link=reactions_link(dashboard_url, incident.ref))


def alert_pending(session: Session, targets: Sequence[AlertTarget], *,
                  policy_of: Callable[[Incident], SpikePolicy],
                  dashboard_url: str | None) -> AlertReport:
    """Send every spike not yet alerted to every target that has not had it.

    Each target's success is recorded in the audit trail (``spike.alerted``, with the target),
    so a target that failed is retried next run while those that succeeded are not asked
    again; the spike's ``alerted_at`` is set once every target has it. A failure is recorded
    too (``spike.alert_failed``, the reason without secrets), and stays visible on the spike
    (``alerted_at`` empty) in the views, the CLI and the dashboard."""
    report = AlertReport()
    if not targets:
        return report
    pending = session.execute(select(Spike).where(col(Spike.alerted_at).is_(None))
                              .order_by(col(Spike.id))).scalars().all()
    for spike in pending:
        incident = session.get(Incident, spike.incident_id)
        if incident is None:
            continue
        done = _targets_done(session, spike)
        alert = alert_of(spike, incident, policy_of(incident), dashboard_url)
        complete = True
        for target in targets:
            if target.name in done:
                continue
            try:
                target.send(alert)
            except Exception as exc:  # any failure of one target: record, retry next run
                complete = False
                reason = f"spike {spike.id} {target.name}: {exc}"
                report.failed.append(reason)
                _audit(session, "spike.alert_failed", spike, target.name, reason=str(exc))
                continue
            report.sent.append(f"{spike.id} {target.name}")
            _audit(session, "spike.alerted", spike, target.name)
        if complete:
            session.execute(update(Spike).where(col(Spike.id) == spike.id)
                            .values(alerted_at=utcnow()))
            report.alerted += 1
        session.commit()
    return report


def _targets_done(session: Session, spike: Spike) -> set[str]:
    """The targets that have had this spike's alert (its incident's ``spike.alerted``
    events: a handful per incident)."""
    details = session.execute(select(col(AuditEvent.detail_json)).where(
        col(AuditEvent.action) == "spike.alerted",
        col(AuditEvent.incident_id) == spike.incident_id)).scalars()
    return {str(d.get("target")) for d in map(json.loads, details)
            if d.get("spike_id") == spike.id}


def _audit(session: Session, action: str, spike: Spike, target: str, **extra: str) -> None:
    detail = {"spike_id": spike.id, "target": target, **extra}
    session.add(AuditEvent(actor=WATCHER, action=action, incident_id=spike.incident_id,
                           detail_json=json.dumps(detail, sort_keys=True)))
    session.flush()
