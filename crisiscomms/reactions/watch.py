"""One pass of the listening watcher: spikes, their alerts, automatic replies.

``crisiscomms reactions watch`` (every ``watch_interval_s``, or ``--once`` for cron and CI) and
the Prefect flow ``crisiscomms/flows/watch_reactions.py`` both call :func:`watch_once`; the
faces build what the domain may not import (the channels, the alert targets) and pass them in.

Each step stands alone: a failing alert target or reply does not stop spike detection, and
what failed is in the report (and retried next pass), never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel
from crisiscomms.delivery.sender import SendPolicy
from crisiscomms.incident.models import Incident
from crisiscomms.playbook.listening import SpikePolicy
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.replies import ReplyCursor, ReplyReport, answer_reactions
from crisiscomms.reactions.spikes import AlertTarget, alert_pending, detect_spikes
from crisiscomms.reactions.views import open_incidents


@dataclass
class WatchReport:
    incidents: int = 0
    spikes: list[dict[str, Any]] = field(default_factory=list)
    """The spikes found in this pass (incident, channel, locale, window, volume)."""
    alerts_sent: list[str] = field(default_factory=list)
    alerts_failed: list[str] = field(default_factory=list)
    replies: ReplyReport = field(default_factory=ReplyReport)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.alerts_failed or self.errors or self.replies.errors
                    or self.replies.failed)

    def as_dict(self) -> dict[str, Any]:
        return {"incidents": self.incidents, "spikes": self.spikes,
                "alerts_sent": self.alerts_sent, "alerts_failed": self.alerts_failed,
                "replies": self.replies.as_dict(), "errors": self.errors}


def _policy_of(settings: Settings) -> Any:
    cache: dict[str, SpikePolicy] = {}

    def policy(incident: Incident) -> SpikePolicy:
        if incident.playbook not in cache:
            try:
                cache[incident.playbook] = load_playbook(
                    incident.playbook, settings.playbooks_dir).listening.spikes
            except CrisisCommsError:
                cache[incident.playbook] = SpikePolicy()
        return cache[incident.playbook]
    return policy


def watch_once(engine: Engine, settings: Settings, *, channels: Mapping[str, Channel],
               targets: Sequence[AlertTarget], cursor: ReplyCursor | None = None,
               policy: SendPolicy | None = None, now: datetime | None = None) -> WatchReport:
    """Detect spikes of every open incident, send the alerts not yet sent, answer what the
    playbooks answer automatically. ``policy``: how replies are sent (the channels' configured
    rates: ``channels.registry.configured_rates``), default from the settings."""
    report = WatchReport()
    policy_of = _policy_of(settings)
    with Session(engine, expire_on_commit=False) as session:
        incidents = open_incidents(session)
        report.incidents = len(incidents)
        for incident in incidents:
            assert incident.id is not None
            try:
                found = detect_spikes(session, incident.id, policy_of(incident), now=now)
            except CrisisCommsError as exc:
                report.errors.append(f"incident {incident.ref}: {exc}")
                continue
            report.spikes += [{"incident": incident.ref, "channel": s.channel,
                               "locale": s.locale, "window_start": s.window_start.isoformat(),
                               "volume": s.volume, "negative_share": s.negative_share}
                              for s in found]
        alerts = alert_pending(session, targets, policy_of=policy_of,
                               dashboard_url=settings.dashboard_url)
    report.alerts_sent, report.alerts_failed = alerts.sent, alerts.failed
    report.replies = answer_reactions(engine, settings, channels, cursor=cursor,
                                      policy=policy)
    return report
