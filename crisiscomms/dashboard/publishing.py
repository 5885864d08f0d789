"""Publishing from the dashboard: an approved stage, or one channel's retried rows.

Decision: the dashboard publishes through the engine (``reconcile_sending``,
``plan_bundle``, ``hold_back``, ``publish_deliveries``: the very functions the flow's tasks
call, with the same claim, reconciliation, status-page-first order and send policy), not through
``crisiscomms.flows.run_playbook``. Without a ``PREFECT_API_URL`` the flow would start Prefect's
temporary server inside the dashboard process (10-20 s per start, a server subprocess owned by
a web page); a button must answer in seconds and the dashboard must not own infrastructure.
Exactly-once does not depend on Prefect: rows are claimed in the database (a concurrent flow run
cannot take the same row) and rows left ``sending`` are reconciled with the provider before
anything is resent, honouring the sending lease so a live sender's rows are left alone. The CLI
(``crisiscomms approve``, ``retry``) keeps the flow path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crisiscomms.channels.registry import build_channels, channel_classes
from crisiscomms.core.database import session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.dashboard.data import engine
from crisiscomms.delivery.contract import Channel
from crisiscomms.delivery.first_lane import first_lane, held_stages, hold_back
from crisiscomms.delivery.ledger import pending_by_channel, pending_ids
from crisiscomms.delivery.sender import PublishReport, publish_deliveries, reconcile_sending
from crisiscomms.incident.service import get_incident, load_bundle, plan_bundle


class _Sender:
    """Sends ledger rows with the flow's policy, keeping one report."""

    def __init__(self, settings: Settings, channels: Mapping[str, Channel]) -> None:
        from crisiscomms.flows.run_playbook import send_policy  # a plain function; starts nothing

        self.settings, self.channels = settings, channels
        self.policy = send_policy(settings)
        self.report = PublishReport()
        self.held: list[str] = []

    def send(self, ids: Sequence[int]) -> PublishReport:
        if not ids:
            return PublishReport()
        report = publish_deliveries(engine(), self.channels, list(ids),
                                    playbooks_dir=self.settings.playbooks_dir,
                                    max_attempts=self.settings.max_attempts,
                                    concurrency=self.settings.send_concurrency,
                                    policy=self.policy)
        self.report.add(report)
        return report

    def send_in_order(self, planned: Mapping[str, Sequence[int]]) -> None:
        """The first lane (status page) first; the rest once their stage's page is out."""
        classes = channel_classes()
        first = first_lane(classes)
        self.send([i for c, ids in planned.items() if c in first for i in ids])
        rest = {c: list(ids) for c, ids in planned.items() if c not in first}
        with session_scope(engine()) as session:
            go, held = hold_back(session, rest, classes, playbooks_dir=self.settings.playbooks_dir)
        self.held.extend(h.line() for h in held)
        self.send([i for ids in go.values() for i in ids])

    def result(self, **extra: Any) -> dict[str, Any]:
        r = self.report
        return {"sent": r.sent, "failed": r.failed, "unconfirmed": r.unconfirmed,
                "skipped": r.skipped, "errors": r.errors + self.held, "held": len(self.held),
                **extra}


def publish_stage(incident_ref: str, stage: str) -> dict[str, Any]:
    """Plan (idempotent) and publish an approved stage: the status page first, then every
    other channel. Refused (``ApprovalError``) when the stage's exact bundle is not approved."""
    settings = Settings()
    channels = build_channels(settings)
    with session_scope(engine()) as session:
        bundle = load_bundle(session, get_incident(session, incident_ref), stage)
    reconciled = reconcile_sending(engine(), channels, playbooks_dir=settings.playbooks_dir,
                                   message_ids=bundle.message_ids,
                                   stale_after_s=settings.sending_lease_s)
    plan_bundle(engine(), settings, channel_classes(), bundle)  # raises unless approved
    with session_scope(engine()) as session:
        planned = pending_ids(session, bundle.message_ids)
    sender = _Sender(settings, channels)
    sender.send_in_order(planned)
    return sender.result(reconciled=reconciled.as_dict())


def publish_channel(incident_ref: str, channel: str) -> dict[str, Any]:
    """Reconcile, then publish the incident's planned rows of ``channel`` (a retry); when the
    channel is the status page, the rows of the stages that waited behind it follow."""
    settings = Settings()
    channels = build_channels(settings)
    with session_scope(engine()) as session:
        incident_id = get_incident(session, incident_ref).id
    assert incident_id is not None
    reconciled = reconcile_sending(engine(), channels, playbooks_dir=settings.playbooks_dir,
                                   incident_id=incident_id,
                                   stale_after_s=settings.sending_lease_s)
    classes = channel_classes()
    with session_scope(engine()) as session:
        ids = pending_by_channel(session, incident_id).get(channel, [])
        behind = (held_stages(session, incident_id, classes, playbooks_dir=settings.playbooks_dir)
                  if channel in first_lane(classes) else [])
    sender = _Sender(settings, channels)
    sender.send_in_order({channel: ids})
    followed = 0
    if behind:  # the status page is retried: what waited behind it follows once it is up
        before = sender.report.sent
        sender.send_in_order({c: list(ids) for h in behind for c, ids in h.held_ids.items()})
        followed = sender.report.sent - before
    return sender.result(followed=followed, reconciled=reconciled.as_dict())
