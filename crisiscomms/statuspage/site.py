"""Every file of one build of the site, computed from the state (no I/O)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

from crisiscomms.statuspage.api import PageInfo, Snapshot
from crisiscomms.statuspage.feeds import feeds
from crisiscomms.statuspage.publish import Previous, SiteFiles
from crisiscomms.statuspage.views import SiteViews, compute_uptimes


def site_locales(state: dict[str, Any]) -> tuple[list[str], str]:
    """(every locale of the site, default first; the default locale)."""
    default = state.get("default_locale") or "en"
    seen = {u["locale"] for i in state["incidents"].values() for u in i["updates"]}
    return [default, *sorted(seen - {default})], default


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def build_site(state: dict[str, Any], page: PageInfo, now: datetime,
               previous: Previous | None = None) -> SiteFiles:
    """Every file of the site by relative path: the default locale at the root, every other
    locale under ``<locale>/``. Incident pages unchanged since ``previous`` (the live build)
    are linked from it; ``files.manifest`` holds the fingerprints for the next build."""
    locales, default = site_locales(state)
    uptimes = compute_uptimes(state, now)
    files = SiteFiles()
    prints = {ref: orjson.dumps(incident, option=orjson.OPT_SORT_KEYS)  # once, not per locale
              for ref, incident in state["incidents"].items()}
    for locale in locales:
        prefix = "" if locale == default else f"{locale}/"
        snapshot = Snapshot(state, page, locale, now, default)
        for relative, data in snapshot.documents().items():
            files[prefix + relative] = _json(data)
        views = SiteViews(snapshot, locales=locales, default_locale=default, uptimes=uptimes,
                          raw_prints=prints)
        for relative, html in views.pages(previous, files.manifest).items():
            files[prefix + relative] = html
        for relative, feed in feeds(snapshot, f"{page.url}/{prefix}").items():
            files[prefix + relative] = feed
    return files
