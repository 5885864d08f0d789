"""The machines' view: the Statuspage public API v2 documents, computed from the state.

Same paths, field names and value sets as Atlassian Statuspage (see
``shared/reference/statuspage-v2.md``), so existing clients and aggregators read ours unchanged.
Descriptions of the indicator come from the English catalogue (Statuspage's own wording).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crisiscomms.statuspage.catalog import Catalog
from crisiscomms.statuspage.indicator import component_statuses, indicator, worst_component_status
from crisiscomms.statuspage.model import (
    CLOSED_STATUSES,
    maintenance_status,
    parse_time,
    short_id,
    split_group,
)

INCIDENTS_LISTED = 50
MAINTENANCES_LISTED = 50
API = "api/v2"


def _rank(locale: str, wanted: str, default: str) -> int:
    return 0 if locale == wanted else 1 if locale == default else 2


@dataclass(frozen=True)
class PageInfo:
    id: str
    name: str
    url: str
    time_zone: str = "Etc/UTC"
    subscribe_url: str | None = None
    """Where the page's subscribe form posts (the intake app's ``/v1/subscribe``); no form if
    None."""


class Snapshot:
    """The state as of ``now`` for one locale: what both views (JSON and HTML) show."""

    def __init__(
        self, state: dict[str, Any], page: PageInfo, locale: str, now: datetime,
        default_locale: str | None = None,
    ) -> None:
        self.state = state
        self.page_info = page
        self.locale = locale
        self.default_locale = default_locale or state.get("default_locale") or locale
        self.prefix = "" if locale == self.default_locale else f"{locale}/"
        """Where this locale's copy of the site lives, relative to the site root."""
        self.now = now
        self.english = Catalog("en")
        self.statuses = component_statuses(state, now)
        self.indicator = indicator(state, now)
        self._components = self._build_components()
        self.component_by_name = {c["_key"]: c for c in self._components if not c["group"]}
        self._incidents: list[dict[str, Any]] | None = None
        self._docs: dict[str, dict[str, Any]] = {}
        self._maintenances: list[dict[str, Any]] | None = None
        self._updated_at: str | None = None

    # -- page, status ----------------------------------------------------------------------

    def updated_at(self) -> str | None:
        """The latest change on the page (computed once per snapshot)."""
        if self._updated_at is None:
            times = [i["updated_at"] for i in self.state["incidents"].values()]
            times += [c["created_at"] for c in self.state["components"].values()]
            times += [m["updated_at"] for m in self.maintenances()]
            self._updated_at = str(max(times, key=parse_time)) if times else ""
        return self._updated_at or None

    def page(self) -> dict[str, Any]:
        return {
            "id": self.page_info.id,
            "name": self.page_info.name,
            "url": self.page_info.url,
            "time_zone": self.page_info.time_zone,
            "updated_at": self.updated_at(),
        }

    def status(self) -> dict[str, str]:
        return {
            "indicator": self.indicator,
            "description": self.english(f"indicator.{self.indicator}"),
        }

    # -- components ------------------------------------------------------------------------

    def _build_components(self) -> list[dict[str, Any]]:
        """Groups and components in page order; a group sits where its first component is."""
        page_id = self.page_info.id
        out: list[dict[str, Any]] = []
        groups: dict[str, dict[str, Any]] = {}
        for name, comp in self.state["components"].items():
            group_name, short = split_group(name)
            group = None
            if group_name is not None:
                group = groups.get(group_name)
                if group is None:
                    group = groups[group_name] = {
                        "_key": group_name,
                        "id": short_id("group", group_name),
                        "name": group_name,
                        "status": "operational",
                        "created_at": comp["created_at"],
                        "updated_at": comp["created_at"],
                        "position": 0,
                        "description": None,
                        "showcase": True,
                        "start_date": comp["created_at"][:10],
                        "group_id": None,
                        "page_id": page_id,
                        "group": True,
                        "only_show_if_degraded": False,
                        "components": [],
                    }
                    out.append(group)
            history = comp.get("history") or []
            updated = history[-1][0] if history else comp["created_at"]
            entry = {
                "_key": name,
                "id": comp["id"],
                "name": short,
                "status": self.statuses.get(name, "operational"),
                "created_at": comp["created_at"],
                "updated_at": updated,
                "position": 0,
                "description": comp.get("description"),
                "showcase": True,
                "start_date": comp["created_at"][:10],
                "group_id": group["id"] if group else None,
                "page_id": page_id,
                "group": False,
                "only_show_if_degraded": False,
            }
            if group is not None:
                group["components"].append(comp["id"])
                group["_children"] = [*group.get("_children", []), entry]
                if parse_time(updated) > parse_time(group["updated_at"]):
                    group["updated_at"] = updated
            else:
                out.append(entry)
        ordered: list[dict[str, Any]] = []
        for item in out:
            ordered.append(item)
            children = item.pop("_children", [])
            if item["group"]:
                item["status"] = worst_component_status(c["status"] for c in children)
            ordered.extend(children)
        for position, item in enumerate(ordered, start=1):
            item["position"] = position
        return ordered

    def component_tree(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(group or component, its children) in page order, for the HTML view."""
        tree: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for item in self._components:
            if item["group"]:
                tree.append((item, []))
            elif item["group_id"] is not None and tree and tree[-1][0]["group"]:
                tree[-1][1].append(item)
            else:
                tree.append((item, []))
        return tree

    def components(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "_key"} for c in self._components]

    # -- incidents -------------------------------------------------------------------------

    def _updates(self, incident: dict[str, Any]) -> list[dict[str, Any]]:
        """One entry per update of the incident, newest first: this locale's text, else the
        default locale's, else the first published (an update never drops out of a locale's
        timeline because it was not translated)."""
        chosen: dict[tuple[str, int], dict[str, Any]] = {}
        seen: dict[tuple[str, str], int] = {}
        for u in incident["updates"]:
            # the n-th text of a locale in an event pairs with the n-th text of the others
            name = u.get("event") or u["key"]
            n = seen[(name, u["locale"])] = seen.get((name, u["locale"]), -1) + 1
            event = (name, n)
            have = chosen.get(event)
            if have is None or _rank(u["locale"], self.locale, self.default_locale) < _rank(
                    have["locale"], self.locale, self.default_locale):
                chosen[event] = u
        return sorted(chosen.values(), key=lambda u: parse_time(u["created_at"]), reverse=True)

    def _component_docs(self, names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            comp = self.component_by_name.get(name)
            if comp is not None:
                out.append({k: v for k, v in comp.items() if k != "_key"})
        return sorted(out, key=lambda c: int(c["position"]))

    def incident(self, incident: dict[str, Any]) -> dict[str, Any]:
        iid = incident.get("slug") or incident["id"]
        return {
            "id": iid,
            "name": incident["name"],
            "status": incident["status"],
            "created_at": incident["created_at"],
            "updated_at": incident["updated_at"],
            "monitoring_at": incident["monitoring_at"],
            "resolved_at": incident["resolved_at"],
            "impact": incident["impact"],
            "shortlink": self.incident_url(iid),
            "started_at": incident["started_at"],
            "page_id": self.page_info.id,
            "incident_updates": [
                {
                    "id": u["id"],
                    "status": u["status"],
                    "body": u["body"],
                    "incident_id": iid,
                    "created_at": u["created_at"],
                    "updated_at": u["created_at"],
                    "display_at": u["created_at"],
                    "affected_components": [
                        {**a, "name": split_group(a["name"])[1]}
                        for a in u["affected_components"]
                    ],
                    "deliver_notifications": True,
                    "custom_tweet": None,
                    "tweet_id": None,
                }
                for u in self._updates(incident)
            ],
            "components": self._component_docs(incident["components"]),
        }

    def incident_url(self, incident_id: str) -> str:
        """The permanent page of an incident or maintenance, in this locale."""
        return f"{self.page_info.url}/{self.prefix}incidents/{incident_id}.html"

    def ordered(self) -> list[dict[str, Any]]:
        """The incidents as kept in the state, newest first (computed once per snapshot)."""
        if self._incidents is None:
            self._incidents = sorted(
                self.state["incidents"].values(),
                key=lambda i: (parse_time(i["started_at"]), parse_time(i["created_at"])),
                reverse=True,
            )
        return self._incidents

    def document(self, incident: dict[str, Any]) -> dict[str, Any]:
        """The v2 document of a state incident (built once per snapshot)."""
        doc = self._docs.get(incident["id"])
        if doc is None:
            doc = self._docs[incident["id"]] = self.incident(incident)
        return doc

    def incidents(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every incident (or the ``limit`` newest), newest first."""
        ordered = self.ordered() if limit is None else self.ordered()[:limit]
        return [self.document(i) for i in ordered]

    def recently_updated(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` incidents updated last, latest first (the feeds)."""
        ordered = sorted(self.ordered(), key=lambda i: parse_time(i["updated_at"]),
                         reverse=True)[:limit]
        return [self.document(i) for i in ordered]

    def summaries(self) -> list[dict[str, Any]]:
        """What the history lists of every incident, newest first, without building the full
        documents (a thousand incidents in five locales)."""
        return [{"id": i.get("slug") or i["id"], "name": i["name"], "status": i["status"],
                 "impact": i["impact"], "started_at": i["started_at"]} for i in self.ordered()]

    def unresolved(self) -> list[dict[str, Any]]:
        return [self.document(i) for i in self.ordered() if i["status"] not in CLOSED_STATUSES]

    # -- maintenances ----------------------------------------------------------------------

    def maintenance(self, maintenance: dict[str, Any]) -> dict[str, Any]:
        mid = maintenance["id"]
        status = maintenance_status(maintenance, self.now)
        start, end = maintenance["scheduled_for"], maintenance["scheduled_until"]
        names = maintenance["components"]
        catalog = Catalog(self.locale)
        steps: list[tuple[str, str, str, str, str]] = [
            ("scheduled", maintenance["created_at"],
             maintenance.get("body") or catalog("maintenance.body.scheduled"),
             "operational", "operational"),
        ]
        if status in ("in_progress", "completed"):
            steps.append(("in_progress", start, catalog("maintenance.body.in_progress"),
                          "operational", "under_maintenance"))
        if status == "completed":
            steps.append(("completed", end, catalog("maintenance.body.completed"),
                          "under_maintenance", "operational"))
        updates = [
            {
                "id": short_id("maintenance-update", mid, step),
                "status": step,
                "body": body,
                "incident_id": mid,
                "created_at": at,
                "updated_at": at,
                "display_at": at,
                "affected_components": [
                    {
                        "code": self.state["components"][n]["id"],
                        "name": split_group(n)[1],
                        "old_status": old,
                        "new_status": new,
                    }
                    for n in names
                    if n in self.state["components"]
                ],
                "deliver_notifications": True,
                "custom_tweet": None,
                "tweet_id": None,
            }
            for step, at, body, old, new in reversed(steps)
        ]
        return {
            "id": mid,
            "name": maintenance["name"],
            "status": status,
            "created_at": maintenance["created_at"],
            "updated_at": updates[0]["created_at"],
            "monitoring_at": None,
            "resolved_at": end if status == "completed" else None,
            "impact": "maintenance",
            "shortlink": self.incident_url(mid),
            "started_at": start,
            "page_id": self.page_info.id,
            "incident_updates": updates,
            "components": self._component_docs(names),
            "scheduled_for": start,
            "scheduled_until": end,
        }

    def maintenances(self) -> list[dict[str, Any]]:
        """Every maintenance, the latest scheduled first."""
        if self._maintenances is None:
            ordered = sorted(self.state["maintenances"].values(),
                             key=lambda m: parse_time(m["scheduled_for"]), reverse=True)
            self._maintenances = [self.maintenance(m) for m in ordered]
        return self._maintenances

    def upcoming(self) -> list[dict[str, Any]]:
        return [m for m in reversed(self.maintenances()) if m["status"] == "scheduled"]

    def active(self) -> list[dict[str, Any]]:
        return [m for m in self.maintenances() if m["status"] in ("in_progress", "verifying")]

    # -- documents -------------------------------------------------------------------------

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every JSON document of the API, by path relative to the site root."""
        page = self.page()
        status = self.status()
        components = self.components()
        incidents = self.incidents(INCIDENTS_LISTED)
        unresolved = self.unresolved()
        upcoming, active = self.upcoming(), self.active()
        return {
            f"{API}/summary.json": {
                "page": page,
                "status": status,
                "components": components,
                "incidents": unresolved,
                "scheduled_maintenances": active + upcoming,
            },
            f"{API}/status.json": {"page": page, "status": status},
            f"{API}/components.json": {"page": page, "components": components},
            f"{API}/incidents.json": {"page": page, "incidents": incidents[:INCIDENTS_LISTED]},
            f"{API}/incidents/unresolved.json": {"page": page, "incidents": unresolved},
            f"{API}/scheduled-maintenances.json": {
                "page": page,
                "scheduled_maintenances": self.maintenances()[:MAINTENANCES_LISTED],
            },
            f"{API}/scheduled-maintenances/upcoming.json": {
                "page": page, "scheduled_maintenances": upcoming,
            },
            f"{API}/scheduled-maintenances/active.json": {
                "page": page, "scheduled_maintenances": active,
            },
        }
