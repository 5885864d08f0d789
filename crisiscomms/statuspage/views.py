"""The people's view: HTML pages of one locale, rendered from a :class:`Snapshot`.

Pages: ``index.html`` (banner, active incidents with their timelines, maintenance, components
with 90-day uptime bars, recent months, the subscribe form), ``history.html`` (every past
incident and completed maintenance by month) and ``incidents/<id>.html`` (one permanent page
per incident and per maintenance: their ``shortlink``; ``crisiscomms serve`` also answers
``/incidents/<id>``, the address messages link to). Jinja2 with
autoescape: incident text is always shown as text. No external requests, tiny inline CSS, a few
lines of inline script that show times in the reader's time zone (UTC text without it).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import orjson
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from crisiscomms.statuspage.api import Snapshot
from crisiscomms.statuspage.catalog import Catalog
from crisiscomms.statuspage.model import CLOSED_STATUSES, parse_time
from crisiscomms.statuspage.publish import Content, Linked, Previous
from crisiscomms.statuspage.uptime import DAYS, Uptime, component_uptime, maintenance_days

TEMPLATES = Path(__file__).parent / "templates"
RECENT_MONTHS = 3
BAR_W = 5
SPLIT = Markup("<!--split-->")  # "<" never survives escaping, so incident text cannot hold it

# Shapes that carry the status without colour (beside the text label).
ICONS = {
    "operational": "✓",
    "degraded_performance": "▲",
    "partial_outage": "◆",
    "major_outage": "✕",
    "under_maintenance": "⚙",
    "none": "·",
    "i-none": "✓",
    "i-minor": "▲",
    "i-major": "◆",
    "i-critical": "✕",
    "i-maintenance": "⚙",
}
# Bar heights (of 30): worse days are shorter, so the bars read without colour too.
BAR_HEIGHT = {
    "operational": 30,
    "under_maintenance": 26,
    "degraded_performance": 22,
    "partial_outage": 15,
    "major_outage": 8,
    "none": 30,
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def _babel_locale(locale: str, fallback: str) -> Locale:
    for candidate in (locale.replace("-", "_"), fallback, "en"):
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


def language_name(locale: str) -> str:
    loc = _babel_locale(locale, "en")
    return (loc.get_display_name(loc) or locale).capitalize()


def utc_text(value: str, *, day: bool = False) -> str:
    if value.endswith("+00:00") and len(value) >= 16:  # ours: UTC, the fast path
        return value[:10] if day else f"{value[:10]} {value[11:16]} UTC"
    moment = parse_time(value).astimezone(UTC)
    return moment.strftime("%Y-%m-%d") if day else moment.strftime("%Y-%m-%d %H:%M UTC")


def when(value: str | None, *, day: bool = False) -> Markup:
    """A ``<time>``: UTC ISO in ``datetime`` (the script shows it in the reader's zone), UTC
    text as the fallback."""
    if not value:
        return Markup("")
    extra = ' data-day="1"' if day else ""
    return Markup(f'<time datetime="{escape(value)}"{extra}>{utc_text(value, day=day)}</time>')


def link(href: str, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(href, text)


def affected(items: Iterable[dict[str, Any]]) -> str:
    return ", ".join(str(a["name"]) for a in items)


def uptime_bar(uptime: Uptime, catalog: Catalog) -> Markup:
    """An inline SVG of the days (runs of operational days drawn as one patterned rect) and the
    uptime text; the figure is also the SVG's accessible name."""
    label = catalog("uptime", percent=f"{uptime.percent:g}", days=DAYS)
    parts: list[str] = []
    days = uptime.days
    i = 0
    while i < len(days):
        status = days[i].status
        if status == "operational":
            j = i
            while j < len(days) and days[j].status == "operational":
                j += 1
            parts.append(f'<rect x="{i * BAR_W}" width="{(j - i) * BAR_W}" height="30" '
                         'fill="url(#okbar)"/>')
            i = j
            continue
        height = BAR_HEIGHT[status]
        title = f"{days[i].day.isoformat()}: {catalog('component.' + status)}"
        parts.append(f'<rect x="{i * BAR_W}" y="{30 - height}" width="{BAR_W - 1}" '
                     f'height="{height}" class="s-{status}"><title>{escape(title)}</title></rect>')
        i += 1
    svg = (f'<svg class="up" viewBox="0 0 {len(days) * BAR_W} 30" preserveAspectRatio="none" '
           f'role="img" aria-label="{escape(label)}">{"".join(parts)}</svg>')
    scale = (f'<div class="scale"><span>{escape(catalog("uptime.days_ago", days=DAYS))}</span>'
             f'<span>{escape(label)}</span><span>{escape(catalog("uptime.today"))}</span></div>')
    return Markup(svg + scale)


class Shell:
    """A page rendered once with markers, filled per incident page (a thousand incident pages
    cost one layout render, not a thousand)."""

    HERE, TITLE, MAIN, UPDATED = "@@HERE@@", "@@TITLE@@", "@@MAIN@@", "@@UPDATED@@"
    MARKS: ClassVar[dict[str, str]] = {"title": TITLE, "main": MAIN}

    def __init__(self, rendered: str) -> None:
        self.text = rendered
        self.parts = re.split(r"(@@(?:HERE|TITLE|MAIN|UPDATED)@@)", rendered)

    def fill(self, *, here: str, title: str, main: str, updated: str = "") -> str:
        values = {self.HERE: str(escape(here)), self.TITLE: str(escape(title)), self.MAIN: main,
                  self.UPDATED: updated}
        return "".join(values.get(part, part) for part in self.parts)


@lru_cache(maxsize=1)
def render_version() -> str:
    """A hash of every template and catalogue: a page rendered by other templates or words is
    never reused."""
    digest = hashlib.sha256()
    for folder in (TEMPLATES, TEMPLATES.parent / "locales"):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class SiteViews:
    """Renders the HTML pages of one locale."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        locales: list[str],
        default_locale: str,
        uptimes: dict[str, Uptime],
        raw_prints: dict[str, bytes] | None = None,
    ) -> None:
        self.snap = snapshot
        self._raw_prints = raw_prints or {}
        self.locale = snapshot.locale
        self.catalog = Catalog(self.locale)
        self.locales = locales
        self.default_locale = default_locale
        self.uptimes = uptimes
        self.babel = _babel_locale(self.locale, self.catalog.language)
        self._months: dict[tuple[int, int], str] = {}
        self._language_names = {loc: language_name(loc) for loc in locales}
        # Status and impact labels looked up, not called, in the hot per-incident template.
        self._labels = {key: self.catalog.markup(key) for key in self.catalog.names()
                        if key.startswith(("status.", "impact."))}

    def _month(self, year: int, month: int) -> str:
        key = (year, month)
        if key not in self._months:
            self._months[key] = format_date(date(year, month, 1), "LLLL y", locale=self.babel)
        return self._months[key]

    def months(self, incidents: list[dict[str, Any]], *, recent: int | None = None,
               ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Past incidents grouped by month, newest month first; ``recent`` months include
        months without incidents (a calm month shows as such)."""
        by_month: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for incident in incidents:
            started = parse_time(incident["started_at"]).astimezone(UTC)
            by_month[(started.year, started.month)].append(incident)
        if recent is not None:
            now = self.snap.now.astimezone(UTC)
            keys: list[tuple[int, int]] = []
            y, m = now.year, now.month
            for _ in range(recent):
                keys.append((y, m))
                y, m = (y, m - 1) if m > 1 else (y - 1, 12)
        else:
            keys = sorted(by_month, reverse=True)
        return [(self._month(y, m), by_month.get((y, m), [])) for y, m in keys]

    def _common(self, depth: int, here: str) -> dict[str, Any]:
        up = "../" * depth
        site_rel = up + ("" if self.locale == self.default_locale else "../")
        return {
            "locale": self.locale,
            "locales": self.locales,
            "default_locale": self.default_locale,
            "language_names": self._language_names,
            "page": self.snap.page_info,
            "site_root": self.snap.page_info.url + "/",
            "root": up,
            "site_rel": site_rel,
            "here": here,
            "t": self.catalog.markup,
            "label": self._labels,
            "when": when,
            "affected": affected,
            "link": link,
            "icons": ICONS,
            "updated_at": self.snap.updated_at(),
        }

    def pages(self, previous: Previous | None = None,
              manifest: dict[str, str] | None = None) -> dict[str, Content]:
        """Every page of this locale by path relative to the locale's root. An incident page
        whose inputs (its document, the page around it, the templates) have the same
        fingerprint as in ``previous`` is linked from it, not rendered; ``manifest`` receives
        the fingerprints (keys relative to the site root)."""
        env = environment()
        snap = self.snap
        maintenances = snap.maintenances()
        done = [m for m in maintenances if m["status"] == "completed"]
        past = [i for i in snap.summaries() if i["status"] in CLOSED_STATUSES]
        if done:  # completed maintenances stay in the history, beside the incidents
            past = sorted([*past, *done], key=lambda i: parse_time(i["started_at"]),
                          reverse=True)
        bars = {
            comp["id"]: uptime_bar(self.uptimes[comp["id"]], self.catalog)
            for comp in snap.components() if not comp["group"]
        }
        files: dict[str, Content] = {}
        files["index.html"] = env.get_template("index.html.j2").render(
            **self._common(0, "index.html"),
            status=snap.status(),
            active=snap.unresolved(),
            maintenances=snap.active() + snap.upcoming(),
            tree=snap.component_tree(),
            bars=bars,
            recent_months=self.months(past, recent=RECENT_MONTHS),
            component_names=list(snap.state["components"]),
        )
        files["history.html"] = env.get_template("history.html.j2").render(
            **self._common(0, "history.html"), months=self.months(past),
        )
        shell = Shell(env.get_template("shell.html.j2").render(
            **{**self._common(1, Shell.HERE), "updated_at": Shell.UPDATED},
            marks=Shell.MARKS, updated_line=Markup(Shell.UPDATED)))
        shell_print = hashlib.sha256(
            f"{render_version()}\0{shell.text}".encode()).hexdigest()[:16]
        # One permanent page per incident and per maintenance (their shortlinks); a closed
        # incident's page rarely changes: reuse it when its fingerprint is the same.
        prefix = snap.prefix
        todo: list[dict[str, Any]] = []
        positions = {name: c["position"] for name, c in snap.component_by_name.items()}
        for raw in snap.ordered():
            slug = raw.get("slug") or raw["id"]
            here = f"incidents/{slug}.html"
            # what the page is made of: the page around it (locale, languages, URLs,
            # templates, words), the incident as stored, where its components stand
            mark = hashlib.sha256(b"\0".join((
                shell_print.encode(), self._raw_prints.get(raw["id"]) or orjson.dumps(
                    raw, option=orjson.OPT_SORT_KEYS),
                orjson.dumps([positions.get(c) for c in raw["components"]]),
            ))).hexdigest()[:24]
            if manifest is not None:
                manifest[prefix + here] = mark
            if previous is not None and previous.manifest.get(prefix + here) == mark:
                files[here] = Linked(previous.root / prefix / here)
            else:
                todo.append(snap.document(raw))
        todo += maintenances  # they follow the clock: always rendered
        mains = env.get_template("incident.html.j2").render(
            **self._common(1, ""), incidents=todo, split=SPLIT).split(SPLIT)
        name = snap.page_info.name
        for incident, main in zip(todo, mains, strict=False):
            here = f"incidents/{incident['id']}.html"
            files[here] = shell.fill(
                here=here, title=f"{incident['name']} · {name}", main=main,
                updated=str(self.catalog.markup("updated", time=when(incident["updated_at"]))))
        return files


def compute_uptimes(state: dict[str, Any], now: datetime) -> dict[str, Uptime]:
    """The 90-day uptime of every component, by component id (computed once per build)."""
    windows: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for m in state["maintenances"].values():
        for name in m["components"]:
            windows[name].append((parse_time(m["scheduled_for"]), parse_time(m["scheduled_until"])))
    return {
        comp["id"]: component_uptime(comp, now, maintenance_days(windows.get(name, []), now))
        for name, comp in state["components"].items()
    }
