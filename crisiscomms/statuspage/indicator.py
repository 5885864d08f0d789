"""Component statuses, group statuses and the page indicator, computed from the state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from crisiscomms.statuspage.model import (
    CLOSED_STATUSES,
    COMPONENT_RANK,
    IMPACT_RANK,
    incident_statuses,
    maintenance_status,
)


def component_statuses(state: dict[str, Any], now: datetime) -> dict[str, str]:
    """Each component's status now: the worst open incident, else under maintenance, else ok."""
    out = incident_statuses(state)
    for maintenance in state["maintenances"].values():
        if maintenance_status(maintenance, now) != "in_progress":
            continue
        for name in maintenance["components"]:
            if out.get(name, "operational") == "operational":
                out[name] = "under_maintenance"
    return out


def indicator(state: dict[str, Any], now: datetime) -> str:
    """The page indicator: the worst open incident impact, else ``maintenance`` while one is in
    progress, else ``none``."""
    worst = "none"
    for incident in state["incidents"].values():
        if incident["status"] not in CLOSED_STATUSES and (
            IMPACT_RANK[incident["impact"]] > IMPACT_RANK[worst]
        ):
            worst = incident["impact"]
    if worst == "none" and any(
        maintenance_status(m, now) == "in_progress" for m in state["maintenances"].values()
    ):
        return "maintenance"
    return worst


def worst_component_status(statuses: Iterable[str]) -> str:
    """A group's status: the worst of its components."""
    return max(statuses, key=lambda s: COMPONENT_RANK[s], default="operational")
