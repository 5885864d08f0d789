"""The status page's state and its lifecycle rules.

The state is one JSON document kept beside the site (``state.json``), so the page can be
rebuilt and published while the engine, Prefect or the database are down. It holds the
components (with their status history), the incidents (with every update, per locale), the
scheduled maintenances and the idempotency keys of the updates already accepted.

Every function here that changes the state checks first and writes after: a refused change
(:class:`LifecycleError`) leaves the state exactly as it was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.text import printable, scrub, text_problem

STATE_VERSION = 1

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved", "postmortem")
OPEN_STATUSES = ("investigating", "identified", "monitoring")
CLOSED_STATUSES = ("resolved", "postmortem")
IMPACTS = ("none", "minor", "major", "critical")
COMPONENT_STATUSES = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
"""Component statuses, mildest first (the order is the rank used to pick the worst)."""
COMPONENT_RANK = {status: rank for rank, status in enumerate(COMPONENT_STATUSES)}
IMPACT_RANK = {impact: rank for rank, impact in enumerate(IMPACTS)}
IMPACT_BY_SEVERITY = {"minor": "minor", "major": "major", "critical": "critical"}
COMPONENT_STATUS_BY_SEVERITY = {
    "minor": "degraded_performance",
    "major": "partial_outage",
    "critical": "major_outage",
}
GROUP_SEPARATOR = " / "
"""A component named ``"Platform / API"`` is the component ``API`` in the group ``Platform``."""

_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Which status an incident may move to from the one it has. Open statuses move freely among
# themselves (a fix that fails sends "monitoring" back to "identified") and to "resolved";
# a postmortem follows a resolution; a closed incident opens again only by an explicit reopen.
_ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset(INCIDENT_STATUSES[:4]),
    **{s: frozenset((*OPEN_STATUSES, "resolved")) for s in OPEN_STATUSES},
    "resolved": frozenset(("resolved", "postmortem")),
    "postmortem": frozenset(("postmortem",)),
}


class LifecycleError(CrisisCommsError):
    """A status change the incident lifecycle does not allow; nothing was changed."""


def short_id(*parts: str) -> str:
    """A short lowercase alphanumeric id, deterministic in its inputs (Statuspage style)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def iso(value: datetime) -> str:
    """ISO 8601 with milliseconds and an offset."""
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no offset")
    return value.isoformat(timespec="milliseconds")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def is_locale(value: str) -> bool:
    return bool(_LOCALE_RE.match(value))


def split_group(name: str) -> tuple[str | None, str]:
    """``"Platform / API"`` → ``("Platform", "API")``; a plain name has no group."""
    group, sep, short = name.partition(GROUP_SEPARATOR)
    if sep and group.strip() and short.strip():
        return group.strip(), short.strip()
    return None, name


def new_state(default_locale: str | None = None) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "generation": 0,
        "default_locale": default_locale,
        "components": {},
        "incidents": {},
        "maintenances": {},
        "keys": {},
    }


def normalise(state: dict[str, Any]) -> dict[str, Any]:
    """Fill in what older states lack (state files written before maintenances existed)."""
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"state has version {state.get('version')!r}, expected {STATE_VERSION}")
    state.setdefault("maintenances", {})
    state.setdefault("keys", {})
    for ref, incident in state.get("incidents", {}).items():
        incident.setdefault("slug", ref)
    for component in state.setdefault("components", {}).values():
        component.setdefault("history", [])
    return state


def check_text(**texts: str | Sequence[str] | None) -> None:
    """ValueError naming the first text the page could not show (the text rule of
    :mod:`crisiscomms.core.text`: its feeds are XML; no control character but newline and
    tab, no bidi override, no lone surrogate); checked before a change touches the state."""
    for name, value in texts.items():
        for item in [value] if value is None or isinstance(value, str) else value:
            problem = text_problem(item) if item is not None else None
            if problem is not None:
                raise ValueError(f"{name} {problem}")


def _strings(value: Any, path: str) -> Iterable[tuple[str, str, Any, Any]]:
    """Every string of the state: (path, text, container, key), keys included (key None)."""
    if isinstance(value, dict):
        for key, item in list(value.items()):
            where = f"{path}.{printable(str(key))}" if path else printable(str(key))
            if isinstance(key, str):
                yield where, key, value, None
            if isinstance(item, str):
                yield where, item, value, key
            else:
                yield from _strings(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            where = f"{path}.{index}"
            if isinstance(item, str):
                yield where, item, value, index
            else:
                yield from _strings(item, where)


def text_problems(state: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the state holds text the page cannot show, and why: ``("incidents.A.name",
    "holds a control character U+001B (ESC) at character 5; remove it ...")``. Only a state
    written before the text rule existed has any."""
    return [(path, problem) for path, text, _, _ in _strings(state, "")
            if (problem := text_problem(text)) is not None]


def repair_text(state: dict[str, Any]) -> list[str]:
    """Remove what the page cannot show from every text of the state (in place); returns the
    paths changed. A key holding such characters (a component name) is renamed everywhere
    the same text appears."""
    changed: list[str] = []
    renamed: dict[str, str] = {}
    for path, text, container, key in list(_strings(state, "")):
        if text_problem(text) is None:
            continue
        fixed = scrub(text)
        changed.append(path)
        if key is None:
            renamed[text] = fixed
        else:
            container[key] = fixed

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {renamed.get(k, k): rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return renamed.get(value, value) if isinstance(value, str) else value

    if renamed:
        for key in list(state):
            state[key] = rename(state[key])
    return changed


def slug_from_url(url: str | None) -> str | None:
    """The incident page a message links to: ``https://status.example.com/incidents/abc``
    (or ``.../incidents/abc.html``) → ``abc``; None for any other URL."""
    if not url:
        return None
    path = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
    _, sep, last = path.rpartition("/incidents/")
    if not sep or "/" in last:
        return None
    last = last.removesuffix(".html")
    return last if _SLUG_RE.match(last) else None


def choose_slug(state: dict[str, Any], ref: str, wanted: str | None) -> str:
    """The incident's page id: the one its messages link to when free, else its reference."""
    taken = {i.get("slug", r) for r, i in state["incidents"].items() if r != ref}
    taken |= set(state.get("maintenances", {}))
    for candidate in (wanted, ref, short_id("incident", ref)):
        if candidate and _SLUG_RE.match(candidate) and candidate not in taken:
            return candidate
    return short_id("incident", ref, str(len(taken)))


def check_transition(current: str | None, new: str, *, reopen: bool = False) -> None:
    """Refuse a status change the lifecycle does not allow (LifecycleError, with the reason;
    its ``field`` is ``status``, its ``values`` the refused status)."""
    at: dict[str, Any] = {"field": "status", "values": (new,)}
    if new not in INCIDENT_STATUSES:
        raise LifecycleError(
            f"incident status {new!r} is not one of {', '.join(INCIDENT_STATUSES)}", **at)
    if new in _ALLOWED[current]:
        return
    if reopen and current in CLOSED_STATUSES and new in OPEN_STATUSES:
        return
    if current is None:
        raise LifecycleError(f"a new incident cannot start as {new!r}; resolve it first", **at)
    if current in CLOSED_STATUSES and new in OPEN_STATUSES:
        raise LifecycleError(
            f"the incident is {current}; moving it back to {new!r} needs an explicit reopen "
            "(a stage named 'reopen', or reopen=True)", **at)
    raise LifecycleError(
        f"the incident is {current}; it cannot move to {new!r} "
        f"(allowed: {', '.join(sorted(_ALLOWED[current]))})", **at)


def incident_component_status(incident: dict[str, Any]) -> str:
    """What an incident does to its components: the explicit fact, else from its severity."""
    if incident["status"] in CLOSED_STATUSES:
        return "operational"
    explicit = incident.get("component_status")
    if explicit:
        return str(explicit)
    return COMPONENT_STATUS_BY_SEVERITY.get(incident.get("severity", ""), "partial_outage")


def incident_statuses(state: dict[str, Any]) -> dict[str, str]:
    """Each component's status from the open incidents alone: the worst one that affects it."""
    out = {name: "operational" for name in state["components"]}
    for incident in state["incidents"].values():
        if incident["status"] in CLOSED_STATUSES:
            continue
        status = incident_component_status(incident)
        for name in incident["components"]:
            if COMPONENT_RANK[status] > COMPONENT_RANK[out.get(name, "operational")]:
                out[name] = status
    return out


def ensure_components(state: dict[str, Any], names: Iterable[str], now: str) -> None:
    for name in names:
        if name not in state["components"]:
            state["components"][name] = {
                "id": short_id("component", name),
                "created_at": now,
                "history": [],
            }


def _record_history(state: dict[str, Any], before: dict[str, str], now: str) -> None:
    after = incident_statuses(state)
    for name, status in after.items():
        if before.get(name, "operational") != status:
            state["components"][name]["history"].append([now, status])


def add_incident_update(
    state: dict[str, Any],
    *,
    key: str,
    ref: str,
    name: str,
    status: str,
    severity: str,
    components: Sequence[str],
    body: str,
    locale: str,
    stage: str,
    now: datetime,
    started_at: datetime,
    resolved_at: datetime | None = None,
    component_status: str | None = None,
    reopen: bool = False,
    slug: str | None = None,
    event: str | None = None,
) -> str:
    """Add one update to an incident (created on its first update); returns the update id.

    Checks everything first (status, lifecycle, component status, locale, times) and raises
    LifecycleError or ValueError without touching ``state``. An update whose ``key`` is
    already in the state is not added again: its id is returned.

    ``slug`` is the incident page id wanted by its messages (see :func:`slug_from_url`; set
    when the incident is created and free); ``event`` ties the locales of one update together
    (a locale without its own text shows the default locale's).
    """
    known = state["keys"].get(key)
    if known is not None:
        return str(known["update_id"])
    incident = state["incidents"].get(ref)
    current = incident["status"] if incident else None
    check_transition(current, status, reopen=reopen)
    if severity not in IMPACT_BY_SEVERITY:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(IMPACT_BY_SEVERITY)}")
    if component_status is not None and component_status not in COMPONENT_STATUSES:
        raise ValueError(
            f"component status {component_status!r} is not one of {', '.join(COMPONENT_STATUSES)}"
        )
    if not is_locale(locale):
        raise ValueError(f"locale {locale!r} is not a locale code")
    check_text(name=name, body=body, components=components, stage=stage)
    stamp = iso(now)
    start = iso(started_at)
    resolved = iso(resolved_at) if resolved_at is not None else None

    # -- checked: now change the state --
    if state.get("default_locale") is None:
        state["default_locale"] = locale
    before = incident_statuses(state)
    ensure_components(state, components, stamp)
    if incident is None:
        incident = state["incidents"][ref] = {
            "id": ref,
            "slug": choose_slug(state, ref, slug),
            "created_at": stamp,
            "monitoring_at": None,
            "resolved_at": None,
            "updates": [],
        }
    incident.update(
        name=name,
        status=status,
        severity=severity,
        impact=IMPACT_BY_SEVERITY[severity],
        components=list(components),
        component_status=component_status,
        started_at=start,
        updated_at=stamp,
    )
    if status == "monitoring" and incident["monitoring_at"] is None:
        incident["monitoring_at"] = stamp
    if status in CLOSED_STATUSES:
        if incident["resolved_at"] is None:
            incident["resolved_at"] = resolved or stamp
    else:
        incident["resolved_at"] = None
    after = incident_statuses(state)
    update_id = short_id("update", key)
    incident["updates"].append(
        {
            "id": update_id,
            "key": key,
            "status": status,
            "body": body,
            "locale": locale,
            "stage": stage,
            "event": event or key,
            "created_at": stamp,
            "affected_components": [
                {
                    "code": state["components"][c]["id"],
                    "name": c,
                    "old_status": before.get(c, "operational"),
                    "new_status": after.get(c, "operational"),
                }
                for c in components
            ],
        }
    )
    _record_history(state, before, stamp)
    state["keys"][key] = {"incident": ref, "update_id": update_id}
    return update_id


def maintenance_status(maintenance: dict[str, Any], now: datetime) -> str:
    """Scheduled before its start, in progress until its end, completed after."""
    if now < parse_time(maintenance["scheduled_for"]):
        return "scheduled"
    if now < parse_time(maintenance["scheduled_until"]):
        return "in_progress"
    return "completed"


def schedule_maintenance(
    state: dict[str, Any],
    *,
    name: str,
    components: Sequence[str],
    start: datetime,
    end: datetime,
    now: datetime,
    body: str | None = None,
) -> str:
    """Announce a maintenance window ahead; returns its id. Its status then follows the clock."""
    if not name.strip():
        raise ValueError("a maintenance needs a name")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a time zone offset")
    if end <= start:
        raise ValueError("a maintenance must end after it starts")
    if end <= now:
        raise ValueError("a maintenance that has already ended cannot be announced")
    if not components:
        raise ValueError("name at least one component under maintenance")
    check_text(name=name, body=body, components=components)
    maintenance_id = short_id("maintenance", name, iso(start), iso(end), *components)
    if maintenance_id in state["maintenances"]:
        return maintenance_id
    stamp = iso(now)
    ensure_components(state, components, stamp)
    state["maintenances"][maintenance_id] = {
        "id": maintenance_id,
        "name": name.strip(),
        "components": list(components),
        "scheduled_for": iso(start),
        "scheduled_until": iso(end),
        "created_at": stamp,
        "body": body,
    }
    return maintenance_id
