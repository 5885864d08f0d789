"""``history.atom`` and ``history.rss`` (feedgen): one entry per incident, newest first, with
its updates as the content (escaped HTML, newest update first)."""

from __future__ import annotations

from typing import Any

from feedgen.feed import FeedGenerator
from markupsafe import escape

from crisiscomms.statuspage.api import Snapshot
from crisiscomms.statuspage.catalog import Catalog
from crisiscomms.statuspage.model import parse_time
from crisiscomms.statuspage.views import utc_text

FEED_ENTRIES = 50


def _content(incident: dict[str, Any], catalog: Catalog) -> str:
    return "".join(
        f"<p><small>{escape(utc_text(u['created_at']))}</small><br>"
        f"<strong>{escape(catalog('status.' + u['status']))}</strong> - {escape(u['body'])}</p>"
        for u in incident["incident_updates"]
    )


def feeds(snapshot: Snapshot, base_url: str) -> dict[str, bytes]:
    """Both feeds of one locale; ``base_url`` is the locale's root URL (ends with ``/``)."""
    catalog = Catalog(snapshot.locale)
    page = snapshot.page_info
    fg = FeedGenerator()
    fg.id(f"tag:{page.id},status-page:{snapshot.locale}")
    fg.title(f"{page.name} - {catalog('history')}")
    fg.link(href=f"{base_url}index.html", rel="alternate")
    fg.link(href=f"{base_url}history.atom", rel="self")
    fg.description(catalog("history"))
    fg.language(snapshot.locale)
    updated = snapshot.updated_at()
    if updated:
        fg.updated(parse_time(updated))
    incidents = snapshot.recently_updated(FEED_ENTRIES)
    for incident in reversed(incidents):  # feedgen prepends: add oldest first
        entry = fg.add_entry()
        url = f"{base_url}incidents/{incident['id']}.html"
        entry.id(url)
        entry.guid(url, permalink=True)
        entry.title(incident["name"])
        entry.link(href=url)
        entry.published(parse_time(incident["created_at"]))
        entry.updated(parse_time(incident["updated_at"]))
        content = _content(incident, catalog)
        entry.content(content, type="html")
        entry.description(content)
    return {"history.atom": fg.atom_str(pretty=True), "history.rss": fg.rss_str(pretty=True)}
