"""The Statuspage public API v2 shapes, written from ``shared/reference/statuspage-v2.md``.

``check_document(path, data)`` returns every problem (empty when the document fits): exact field
names, allowed values, types, ISO 8601 times with an offset, ordering rules. Independent of the
code that writes the documents, on purpose.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

PATHS = (
    "summary.json", "status.json", "components.json", "incidents.json",
    "incidents/unresolved.json", "scheduled-maintenances.json",
    "scheduled-maintenances/upcoming.json", "scheduled-maintenances/active.json",
)
PAGE = {"id", "name", "url", "time_zone", "updated_at"}
STATUS = {"indicator", "description"}
INDICATORS = {"none", "minor", "major", "critical", "maintenance"}
COMPONENT = {"id", "name", "status", "created_at", "updated_at", "position", "description",
             "showcase", "start_date", "group_id", "page_id", "group", "only_show_if_degraded"}
COMPONENT_STATUSES = {"operational", "degraded_performance", "partial_outage", "major_outage",
                      "under_maintenance"}
INCIDENT = {"id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at",
            "impact", "shortlink", "started_at", "page_id", "incident_updates", "components"}
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "postmortem"}
MAINTENANCE_STATUSES = {"scheduled", "in_progress", "verifying", "completed"}
IMPACTS = {"none", "minor", "major", "critical"}
UPDATE = {"id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
          "affected_components", "deliver_notifications", "custom_tweet", "tweet_id"}
AFFECTED = {"code", "name", "old_status", "new_status"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$", re.IGNORECASE)


class _Check:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def keys(self, where: str, obj: Any, expected: set[str]) -> bool:
        if not isinstance(obj, dict):
            self.fail(where, f"not an object: {obj!r}")
            return False
        if set(obj) != expected:
            missing, extra = expected - set(obj), set(obj) - expected
            self.fail(where, f"fields differ: missing {sorted(missing)}, extra {sorted(extra)}")
            return False
        return True

    def time(self, where: str, value: Any, *, nullable: bool = False) -> datetime | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.fail(where, f"time is not a string: {value!r}")
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(where, f"not ISO 8601: {value!r}")
            return None
        if parsed.tzinfo is None:
            self.fail(where, f"time without offset: {value!r}")
        return parsed

    def one_of(self, where: str, value: Any, allowed: set[str]) -> None:
        if value not in allowed:
            self.fail(where, f"{value!r} not in {sorted(allowed)}")

    def type_(self, where: str, value: Any, kind: type | tuple[type, ...]) -> None:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(where, f"{value!r} is not {kind}")

    def ident(self, where: str, value: Any) -> None:
        if not isinstance(value, str) or not ID_RE.match(value):
            self.fail(where, f"id {value!r} is not a short alphanumeric")

    # -- shapes --

    def page(self, obj: Any) -> None:
        if self.keys("page", obj, PAGE):
            self.ident("page.id", obj["id"])
            self.type_("page.name", obj["name"], str)
            self.type_("page.url", obj["url"], str)
            self.type_("page.time_zone", obj["time_zone"], str)
            self.time("page.updated_at", obj["updated_at"], nullable=True)

    def status(self, obj: Any) -> None:
        if self.keys("status", obj, STATUS):
            self.one_of("status.indicator", obj["indicator"], INDICATORS)
            self.type_("status.description", obj["description"], str)

    def component(self, where: str, obj: Any, ids: set[str] | None = None) -> None:
        expected = COMPONENT | ({"components"} if isinstance(obj, dict) and obj.get("group")
                                else set())
        if not self.keys(where, obj, expected):
            return
        self.ident(f"{where}.id", obj["id"])
        self.type_(f"{where}.name", obj["name"], str)
        self.one_of(f"{where}.status", obj["status"], COMPONENT_STATUSES)
        self.time(f"{where}.created_at", obj["created_at"])
        self.time(f"{where}.updated_at", obj["updated_at"])
        self.type_(f"{where}.position", obj["position"], int)
        self.type_(f"{where}.description", obj["description"], (str, type(None)))
        for flag in ("showcase", "group", "only_show_if_degraded"):
            self.type_(f"{where}.{flag}", obj[flag], bool)
        if obj["start_date"] is not None and not re.match(r"^\d{4}-\d{2}-\d{2}$",
                                                           str(obj["start_date"])):
            self.fail(f"{where}.start_date", f"not a date: {obj['start_date']!r}")
        self.type_(f"{where}.group_id", obj["group_id"], (str, type(None)))
        self.ident(f"{where}.page_id", obj["page_id"])
        if obj["group"]:
            self.type_(f"{where}.components", obj["components"], list)
            for cid in obj["components"]:
                if ids is not None and cid not in ids:
                    self.fail(f"{where}.components", f"unknown component id {cid!r}")

    def components(self, where: str, items: Any, *, complete: bool = True) -> None:
        if not isinstance(items, list):
            self.fail(where, "not a list")
            return
        ids = {c.get("id") for c in items if isinstance(c, dict)}
        for n, comp in enumerate(items):
            self.component(f"{where}[{n}]", comp, ids if complete else None)
        positions = [c.get("position") for c in items if isinstance(c, dict)]
        if positions != sorted(positions):  # type: ignore[type-var]
            self.fail(where, "components are not ordered by position")
        for comp in items if complete else ():  # an incident lists only what it affects
            if isinstance(comp, dict) and comp.get("group_id") and comp["group_id"] not in ids:
                self.fail(where, f"group_id {comp['group_id']!r} names no group")

    def update(self, where: str, obj: Any, statuses: set[str], incident_id: str) -> None:
        if not self.keys(where, obj, UPDATE):
            return
        self.ident(f"{where}.id", obj["id"])
        self.one_of(f"{where}.status", obj["status"], statuses)
        self.type_(f"{where}.body", obj["body"], str)
        if obj["incident_id"] != incident_id:
            self.fail(f"{where}.incident_id", f"{obj['incident_id']!r} != {incident_id!r}")
        for field in ("created_at", "updated_at", "display_at"):
            self.time(f"{where}.{field}", obj[field])
        self.type_(f"{where}.deliver_notifications", obj["deliver_notifications"], bool)
        self.type_(f"{where}.custom_tweet", obj["custom_tweet"], (str, type(None)))
        self.type_(f"{where}.tweet_id", obj["tweet_id"], (str, type(None)))
        self.type_(f"{where}.affected_components", obj["affected_components"], list)
        for n, item in enumerate(obj["affected_components"]):
            w = f"{where}.affected_components[{n}]"
            if self.keys(w, item, AFFECTED):
                self.type_(f"{w}.code", item["code"], str)
                self.type_(f"{w}.name", item["name"], str)
                self.one_of(f"{w}.old_status", item["old_status"], COMPONENT_STATUSES)
                self.one_of(f"{w}.new_status", item["new_status"], COMPONENT_STATUSES)

    def incident(self, where: str, obj: Any, *, maintenance: bool = False) -> None:
        expected = INCIDENT | ({"scheduled_for", "scheduled_until"} if maintenance else set())
        if not self.keys(where, obj, expected):
            return
        statuses = MAINTENANCE_STATUSES if maintenance else INCIDENT_STATUSES
        self.ident(f"{where}.id", obj["id"])
        self.type_(f"{where}.name", obj["name"], str)
        self.one_of(f"{where}.status", obj["status"], statuses)
        self.one_of(f"{where}.impact", obj["impact"],
                    {"maintenance"} if maintenance else IMPACTS)
        for field in ("created_at", "updated_at", "started_at"):
            self.time(f"{where}.{field}", obj[field])
        self.time(f"{where}.monitoring_at", obj["monitoring_at"], nullable=True)
        self.time(f"{where}.resolved_at", obj["resolved_at"], nullable=True)
        if maintenance:
            start = self.time(f"{where}.scheduled_for", obj["scheduled_for"])
            end = self.time(f"{where}.scheduled_until", obj["scheduled_until"])
            if start and end and end <= start:
                self.fail(where, "scheduled_until is not after scheduled_for")
        self.type_(f"{where}.shortlink", obj["shortlink"], str)
        self.ident(f"{where}.page_id", obj["page_id"])
        updates = obj["incident_updates"]
        self.type_(f"{where}.incident_updates", updates, list)
        for n, update in enumerate(updates):
            self.update(f"{where}.incident_updates[{n}]", update, statuses, obj["id"])
        times = [u["created_at"] for u in updates if isinstance(u, dict) and "created_at" in u]
        parsed = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
        if parsed != sorted(parsed, reverse=True):
            self.fail(f"{where}.incident_updates", "updates are not newest first")
        self.components(f"{where}.components", obj["components"], complete=False)

    def incidents(self, where: str, items: Any, *, maintenance: bool = False) -> None:
        if not isinstance(items, list):
            self.fail(where, "not a list")
            return
        for n, incident in enumerate(items):
            self.incident(f"{where}[{n}]", incident, maintenance=maintenance)


def check_document(path: str, data: Any) -> list[str]:
    """Problems of one API v2 document (``path`` relative to ``api/v2/``)."""
    c = _Check()
    shapes = {
        "summary.json": {"page", "status", "components", "incidents", "scheduled_maintenances"},
        "status.json": {"page", "status"},
        "components.json": {"page", "components"},
        "incidents.json": {"page", "incidents"},
        "incidents/unresolved.json": {"page", "incidents"},
        "scheduled-maintenances.json": {"page", "scheduled_maintenances"},
        "scheduled-maintenances/upcoming.json": {"page", "scheduled_maintenances"},
        "scheduled-maintenances/active.json": {"page", "scheduled_maintenances"},
    }
    if not c.keys(path, data, shapes[path]):
        return c.problems
    c.page(data["page"])
    if "status" in data:
        c.status(data["status"])
    if "components" in data:
        c.components(f"{path}:components", data["components"])
    if "incidents" in data:
        c.incidents(f"{path}:incidents", data["incidents"])
        if path == "incidents.json" and len(data["incidents"]) > 50:
            c.fail(path, "more than the 50 most recent incidents")
        if path in ("incidents/unresolved.json", "summary.json"):
            for i in data["incidents"]:
                if i.get("status") in ("resolved", "postmortem"):
                    c.fail(path, f"resolved incident {i.get('id')} listed as unresolved")
    if "scheduled_maintenances" in data:
        c.incidents(f"{path}:scheduled_maintenances", data["scheduled_maintenances"],
                    maintenance=True)
        allowed = {
            "scheduled-maintenances/upcoming.json": {"scheduled"},
            "scheduled-maintenances/active.json": {"in_progress", "verifying"},
            "summary.json": {"scheduled", "in_progress", "verifying"},
        }.get(path)
        if allowed:
            for m in data["scheduled_maintenances"]:
                c.one_of(f"{path}:{m.get('id')}.status", m.get("status"), allowed)
    return c.problems
