"""The public status page as a channel: static HTML plus Statuspage-compatible JSON.

The channel keeps its own state in ``output_dir/state.json`` (incidents and their updates), so it
publishes while the database is down, and regenerates the whole site on every update.

Layout of ``output_dir``::

    state.json              the committed state (written whole: temp file + os.replace)
    site -> builds/g00000007-1a2b3c4d   the live site: a symlink, switched atomically
    builds/                 generated sites; the live one and the one before are kept
    .lock                   serialises publishers across processes (flock)

Publishing an update: the update is added to the state and the state committed (its
``generation`` goes up by one), then the site is generated into a temporary directory beside the
live one, renamed, and made live by replacing the ``site`` symlink with ``os.replace`` (atomic:
a reader sees the old site or the new one, never half of one). When generating or switching
fails, the previous site stays live and the send answers *retryable*; the retry finds the update
already in the state, sees the live site is older than the state, and publishes it then. A send
is *sent* only once the live site shows the update. Serve ``output_dir/site``.

Locales: Statuspage's JSON has one body per update, so the root of the site (``index.html``,
``api/v2/``) carries the default locale (the ``default_locale`` given, else the first locale ever
published); every other locale gets the same site under ``<locale>/``.

The site here is the simple version; the full public page (per-incident pages, feeds,
maintenances) is :mod:`crisiscomms.statuspage`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, ClassVar

from crisiscomms.channels.base import ChannelLimits, DeliveryResult, OutboundBatch, RenderedMessage
from crisiscomms.channels.files import dumps, path_lock, utc_now, write_atomic
from crisiscomms.limits import limit_problems

STATE_VERSION = 1
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved", "postmortem")
CLOSED_STATUSES = ("resolved", "postmortem")
IMPACT_BY_SEVERITY = {"minor": "minor", "major": "major", "critical": "critical"}
IMPACT_RANK = {"none": 0, "minor": 1, "major": 2, "critical": 3}
COMPONENT_STATUS_BY_IMPACT = {
    "none": "operational",
    "minor": "degraded_performance",
    "major": "partial_outage",
    "critical": "major_outage",
}
COMPONENT_RANK = {
    "operational": 0,
    "under_maintenance": 1,
    "degraded_performance": 2,
    "partial_outage": 3,
    "major_outage": 4,
}
# Statuspage's own descriptions of the indicator, so aggregators read what they expect.
STATUS_DESCRIPTION = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major System Outage",
}
INCIDENTS_LISTED = 50
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_BUILD_RE = re.compile(r"^g(\d{8})-[0-9a-f]{8}$")





def short_id(*parts: str) -> str:
    """A short lowercase alphanumeric id, deterministic in its inputs (Statuspage style)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def iso(value: datetime) -> str:
    """ISO 8601 with milliseconds and an offset."""
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no offset")
    return value.isoformat(timespec="milliseconds")








class StatusPageChannel:
    """Publishes incident updates to a static, atomically switched status page."""

    name: ClassVar[str] = "status_page"
    parts: ClassVar[tuple[str, ...]] = ("text",)
    personal: ClassVar[bool] = False
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_body_bytes=65536)

    def __init__(
        self,
        output_dir: Path,
        *,
        page_name: str,
        page_url: str,
        default_locale: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not page_name.strip():
            raise ValueError("page_name is empty")
        if not page_url.startswith(("https://", "http://")):
            raise ValueError("page_url must be an http(s) URL")
        if default_locale is not None and not _LOCALE_RE.match(default_locale):
            raise ValueError(f"default_locale {default_locale!r} is not a locale code")
        self.output_dir = Path(output_dir).absolute()
        self.page_name = page_name
        self.page_url = page_url.rstrip("/")
        self.default_locale = default_locale
        self.clock = clock
        self.page_id = short_id("page", self.page_url)
        self._lock = path_lock(self.output_dir)

    def __repr__(self) -> str:
        return f"StatusPageChannel({str(self.output_dir)!r}, page_url={self.page_url!r})"

    @property
    def state_path(self) -> Path:
        return self.output_dir / "state.json"

    @property
    def site_path(self) -> Path:
        """The live site (a symlink to the current build); serve this directory."""
        return self.output_dir / "site"

    # -- checks, no I/O ------------------------------------------------------------------------

    def validate(self, message: RenderedMessage) -> list[str]:
        problems = limit_problems(self.limits, message.parts)
        if "text" not in message.parts:
            problems.append("text is missing")
        if not _LOCALE_RE.match(message.locale):
            problems.append(f"locale {message.locale!r} is not a locale code")
        return problems

    # -- state ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / ".lock", "a+") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {
                "version": STATE_VERSION,
                "generation": 0,
                "default_locale": self.default_locale,
                "components": {},
                "incidents": {},
                "keys": {},
            }
        state: dict[str, Any] = json.loads(text)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path} has version {state.get('version')!r}")
        return state

    def load_state(self) -> dict[str, Any]:
        """The committed state (a copy), for inspection and reconciliation."""
        return self._load()

    def accepted(self, key: str) -> bool:
        """True when an update with this idempotency key is in the committed state."""
        return key in self._load().get("keys", {})

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Crash reconciliation: is this batch's update already in the committed state?"""
        return self.accepted(batch.key)

    def live_generation(self) -> int:
        """The state generation the live site shows (0 when there is no site yet)."""
        try:
            target = os.readlink(self.site_path)
        except (FileNotFoundError, OSError):
            return 0
        match = _BUILD_RE.match(Path(target).name)
        return int(match.group(1)) if match else 0

    # -- send ----------------------------------------------------------------------------------

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Add the update (once per key) and publish the regenerated site atomically."""
        text = batch.message.parts.get("text")
        if not text:
            raise ValueError(f"batch {batch.key}: the message has no text")
        if batch.incident_status not in INCIDENT_STATUSES:
            return DeliveryResult.permanent(
                f"incident status {batch.incident_status!r} is not one of "
                f"{', '.join(INCIDENT_STATUSES)}"
            )
        if not _LOCALE_RE.match(batch.message.locale):
            return DeliveryResult.permanent(f"locale {batch.message.locale!r} is not a locale code")
        try:
            with self._locked():
                state = self._load()
                known = state["keys"].get(batch.key)
                if known is None:
                    update_id = self._add_update(state, batch, text)
                    state["generation"] += 1
                    write_atomic(self.state_path, dumps(state))
                else:
                    update_id = known["update_id"]
                if self.live_generation() < state["generation"]:
                    self._publish(state)
        except OSError as exc:
            return DeliveryResult.retry(f"status page not published: {_describe(exc)}")
        except ValueError as exc:  # an unreadable state file
            return DeliveryResult.retry(f"status page state unreadable: {exc}")
        return DeliveryResult.sent(update_id)

    def _add_update(self, state: dict[str, Any], batch: OutboundBatch, text: str) -> str:
        facts = batch.facts
        now = iso(self.clock())
        ref = facts.incident_ref
        locale = batch.message.locale
        if state.get("default_locale") is None:
            state["default_locale"] = locale
        before = _component_statuses(state)
        for name in facts.components:
            state["components"].setdefault(
                name, {"id": short_id("component", name), "created_at": now}
            )
        incident = state["incidents"].setdefault(
            ref,
            {
                "id": ref,
                "created_at": now,
                "monitoring_at": None,
                "resolved_at": None,
                "updates": [],
            },
        )
        status = batch.incident_status
        incident.update(
            name=facts.title,
            status=status,
            impact=IMPACT_BY_SEVERITY[facts.severity],
            components=list(facts.components),
            started_at=iso(facts.started_at),
            updated_at=now,
        )
        if status == "monitoring" and incident["monitoring_at"] is None:
            incident["monitoring_at"] = now
        if status in CLOSED_STATUSES:
            if incident["resolved_at"] is None:
                resolved = facts.resolved_at
                incident["resolved_at"] = iso(resolved) if resolved is not None else now
        else:
            incident["resolved_at"] = None
        after = _component_statuses(state)
        update_id = short_id("update", batch.key)
        incident["updates"].append(
            {
                "id": update_id,
                "key": batch.key,
                "status": status,
                "body": text,
                "locale": locale,
                "stage": batch.message.stage,
                "created_at": now,
                "affected_components": [
                    {
                        "code": state["components"][name]["id"],
                        "name": name,
                        "old_status": before.get(name, "operational"),
                        "new_status": after.get(name, "operational"),
                    }
                    for name in facts.components
                ],
            }
        )
        state["keys"][batch.key] = {"incident": ref, "update_id": update_id}
        return update_id

    # -- publishing ----------------------------------------------------------------------------

    def _publish(self, state: dict[str, Any]) -> None:
        """Generate the site beside the live one, then switch the ``site`` symlink to it."""
        builds = self.output_dir / "builds"
        builds.mkdir(exist_ok=True)
        name = f"g{state['generation']:08d}-{uuid.uuid4().hex[:8]}"
        tmp = builds / f".tmp-{name}"
        try:
            tmp.mkdir()
            for relative, content in self._site_files(state).items():
                path = tmp / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
            final = builds / name
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        link = self.output_dir / f".site-{name}.lnk"
        try:
            os.symlink(Path("builds") / name, link)
            os.replace(link, self.site_path)
        except BaseException:
            with contextlib.suppress(OSError):
                link.unlink()
            shutil.rmtree(final, ignore_errors=True)
            raise
        self._prune(builds, keep=name)

    def _prune(self, builds: Path, *, keep: str) -> None:
        """Drop old builds: keep the live one and the newest before it (readers may hold it)."""
        finished = sorted(
            (p for p in builds.iterdir() if _BUILD_RE.match(p.name)), key=lambda p: p.name
        )
        older = [p for p in finished if p.name != keep]
        for path in older[:-1]:
            shutil.rmtree(path, ignore_errors=True)
        for path in builds.glob(".tmp-*"):
            shutil.rmtree(path, ignore_errors=True)

    def _site_files(self, state: dict[str, Any]) -> dict[str, str]:
        """Every file of the site, by relative path."""
        default = state.get("default_locale") or "en"
        locales = sorted(
            {u["locale"] for i in state["incidents"].values() for u in i["updates"]} | {default}
        )
        files: dict[str, str] = {}
        for locale in locales:
            prefix = "" if locale == default else f"{locale}/"
            view = _View(state, locale, self.page_id, self.page_name, self.page_url)
            files[f"{prefix}index.html"] = view.html(locales, default)
            for relative, data in view.api().items():
                files[f"{prefix}{relative}"] = dumps(data)
        return files


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{name}: {exc.strerror or exc}"


def _open(incident: dict[str, Any]) -> bool:
    return incident["status"] not in CLOSED_STATUSES


def _component_statuses(state: dict[str, Any]) -> dict[str, str]:
    """Each component's status: the worst impact of the open incidents that affect it."""
    out = {name: "operational" for name in state["components"]}
    for incident in state["incidents"].values():
        if not _open(incident):
            continue
        status = COMPONENT_STATUS_BY_IMPACT[incident["impact"]]
        for name in incident["components"]:
            if COMPONENT_RANK[status] > COMPONENT_RANK[out.get(name, "operational")]:
                out[name] = status
    return out


class _View:
    """The site for one locale, computed from the state."""

    def __init__(
        self, state: dict[str, Any], locale: str, page_id: str, page_name: str, page_url: str
    ) -> None:
        self.state = state
        self.locale = locale
        self.page_id = page_id
        self.page_name = page_name
        self.page_url = page_url
        incidents = list(state["incidents"].values())
        times = [i["updated_at"] for i in incidents] + [
            c["created_at"] for c in state["components"].values()
        ]
        self.updated_at = max(times) if times else None
        self.statuses = _component_statuses(state)

    def page(self) -> dict[str, Any]:
        return {
            "id": self.page_id,
            "name": self.page_name,
            "url": self.page_url,
            "time_zone": "Etc/UTC",
            "updated_at": self.updated_at,
        }

    def status(self) -> dict[str, str]:
        worst = "none"
        for incident in self.state["incidents"].values():
            if _open(incident) and IMPACT_RANK[incident["impact"]] > IMPACT_RANK[worst]:
                worst = incident["impact"]
        return {"indicator": worst, "description": STATUS_DESCRIPTION[worst]}

    def components(self) -> list[dict[str, Any]]:
        out = []
        for position, (name, comp) in enumerate(self.state["components"].items(), start=1):
            changed = [
                u["created_at"]
                for i in self.state["incidents"].values()
                for u in i["updates"]
                if name in i["components"]
            ]
            out.append(
                {
                    "id": comp["id"],
                    "name": name,
                    "status": self.statuses[name],
                    "created_at": comp["created_at"],
                    "updated_at": max(changed, default=comp["created_at"]),
                    "position": position,
                    "description": None,
                    "showcase": True,
                    "start_date": comp["created_at"][:10],
                    "group_id": None,
                    "page_id": self.page_id,
                    "group": False,
                    "only_show_if_degraded": False,
                }
            )
        return out

    def _updates(self, incident: dict[str, Any]) -> list[dict[str, Any]]:
        """The incident's updates in this locale (all of them if it has none), newest first."""
        mine = [u for u in incident["updates"] if u["locale"] == self.locale]
        chosen = mine or incident["updates"]
        return sorted(chosen, key=lambda u: u["created_at"], reverse=True)

    def incident(self, incident: dict[str, Any]) -> dict[str, Any]:
        by_name = {c["name"]: c for c in self.components()}
        return {
            "id": incident["id"],
            "name": incident["name"],
            "status": incident["status"],
            "created_at": incident["created_at"],
            "updated_at": incident["updated_at"],
            "monitoring_at": incident["monitoring_at"],
            "resolved_at": incident["resolved_at"],
            "impact": incident["impact"],
            "shortlink": f"{self.page_url}/#incident-{incident['id']}",
            "started_at": incident["started_at"],
            "page_id": self.page_id,
            "incident_updates": [
                {
                    "id": u["id"],
                    "status": u["status"],
                    "body": u["body"],
                    "incident_id": incident["id"],
                    "created_at": u["created_at"],
                    "updated_at": u["created_at"],
                    "display_at": u["created_at"],
                    "affected_components": u["affected_components"],
                    "deliver_notifications": True,
                    "custom_tweet": None,
                    "tweet_id": None,
                }
                for u in self._updates(incident)
            ],
            "components": [by_name[name] for name in incident["components"] if name in by_name],
        }

    def incidents(self) -> list[dict[str, Any]]:
        ordered = sorted(
            self.state["incidents"].values(),
            key=lambda i: (
                datetime.fromisoformat(i["started_at"]), datetime.fromisoformat(i["created_at"])
            ),
            reverse=True,
        )
        return [self.incident(i) for i in ordered]

    def api(self) -> dict[str, dict[str, Any]]:
        page = self.page()
        incidents = self.incidents()
        unresolved = [i for i in incidents if i["status"] not in CLOSED_STATUSES]
        components = self.components()
        status = self.status()
        return {
            "api/v2/status.json": {"page": page, "status": status},
            "api/v2/summary.json": {
                "page": page,
                "status": status,
                "components": components,
                "incidents": unresolved,
                "scheduled_maintenances": [],
            },
            "api/v2/components.json": {"page": page, "components": components},
            "api/v2/incidents.json": {"page": page, "incidents": incidents[:INCIDENTS_LISTED]},
            "api/v2/incidents/unresolved.json": {"page": page, "incidents": unresolved},
            "api/v2/scheduled-maintenances.json": {"page": page, "scheduled_maintenances": []},
        }

    def html(self, locales: list[str], default: str) -> str:
        e = escape
        status = self.status()
        incidents = self.incidents()
        active = [i for i in incidents if i["status"] not in CLOSED_STATUSES]
        past = [i for i in incidents if i["status"] in CLOSED_STATUSES]
        root = "" if self.locale == default else "../"
        out = [
            "<!DOCTYPE html>",
            f'<html lang="{e(self.locale)}">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.page_name)}</title>",
            '<link rel="alternate" type="application/json" href="api/v2/summary.json">',
            "<style>",
            "body{font-family:system-ui,sans-serif;max-width:48rem;margin:auto;padding:1rem;"
            "color:#1b1b1b}",
            ".banner{padding:1rem;border-radius:.4rem;color:#fff;font-weight:600}",
            ".none{background:#2e7d32}.minor{background:#b26a00}.major{background:#c4410c}"
            ".critical{background:#b00020}",
            "li{margin:.3rem 0}.update p{white-space:pre-line;margin:.2rem 0}",
            "time,.meta{color:#555;font-size:.9em}",
            "</style>",
            "</head>",
            "<body>",
            f'<header><h1><a href="{e(self.page_url)}">{e(self.page_name)}</a></h1>',
        ]
        if len(locales) > 1:
            links = " ".join(
                f'<a href="{root}{"" if loc == default else e(loc) + "/"}index.html"'
                f' hreflang="{e(loc)}">{e(loc)}</a>'
                for loc in locales
            )
            out.append(f"<nav>{links}</nav>")
        out += [
            "</header>",
            "<main>",
            f'<p class="banner {e(status["indicator"])}" role="status">'
            f'{e(status["description"])}</p>',
            "<section><h2>Components</h2><ul>",
        ]
        for comp in self.components():
            out.append(
                f'<li>{e(comp["name"])}: <span class="meta">'
                f'{e(comp["status"].replace("_", " "))}</span></li>'
            )
        out.append("</ul></section>")
        out.append("<section><h2>Active incidents</h2>")
        out += [self._incident_html(i) for i in active] or ["<p>None.</p>"]
        out.append("</section>")
        out.append("<section><h2>Past incidents</h2>")
        out += [self._incident_html(i) for i in past] or ["<p>None.</p>"]
        out += ["</section>", "</main>", "</body>", "</html>", ""]
        return "\n".join(out)

    def _incident_html(self, incident: dict[str, Any]) -> str:
        e = escape
        out = [
            f'<article id="incident-{e(incident["id"])}">',
            f'<h3>{e(incident["name"])} <span class="meta">({e(incident["impact"])} impact, '
            f'{e(incident["status"])})</span></h3>',
            "<ol reversed>",
        ]
        for update in incident["incident_updates"]:
            out.append(
                f'<li class="update"><strong>{e(update["status"].capitalize())}</strong> '
                f'<time datetime="{e(update["created_at"])}">{e(update["created_at"])}</time>'
                f'<p>{e(update["body"])}</p></li>'
            )
        out += ["</ol>", "</article>"]
        return "\n".join(out)
