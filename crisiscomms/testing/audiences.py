"""Synthetic audiences for drills, the demo, tests and benchmarks: subscribers at reserved
example domains, in several languages and time zones, and a small press list.

Only faces (the drill and demo commands), tests and ``bench/`` import this; real audiences come
in through :mod:`crisiscomms.audience.importer` and the subscription API.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func
from sqlmodel import Session, col, select

from crisiscomms.audience.models import Recipient
from crisiscomms.audience.recipients import PRESS_LIST, insert_recipients
from crisiscomms.core.clock import utcnow

DRILL_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus",
               "Margaret Hamilton", "", "Zoë O'Brien", "Dennis Ritchie", "Hedy Lamarr")
DRILL_DOMAIN = "drill.example.com"
DRILL_PRESS_DOMAIN = "press.drill.example.net"

DRILL_LOCALE_TAGS = {"en": ("en", "en-GB"), "es": ("es", "es-MX"), "fr": ("fr", "fr-CA"),
                     "de": ("de", "de-AT"), "ja": ("ja",)}
"""Tags drill subscribers ask for: regional variants exercise the fallback (es-MX → es)."""

DRILL_TIME_ZONES = {
    "en": ("America/New_York", "Europe/London", "America/Los_Angeles"),
    "es": ("Europe/Madrid", "America/Mexico_City"),
    "fr": ("Europe/Paris", "America/Toronto"),
    "de": ("Europe/Berlin", "Europe/Vienna"),
    "ja": ("Asia/Tokyo",),
}
"""Where drill subscribers of each language live (several zones per language)."""


def drill_recipients(count: int, *, domain: str = DRILL_DOMAIN, start: int = 1,
                     locales: tuple[str, ...] = ("en",), spread_time_zones: bool = False,
                     lists: str | None = None, prefix: str = "subscriber",
                     phones: bool = False) -> Iterable[dict[str, object]]:
    """Synthetic subscribers ``start``..``count`` at a reserved example domain; with
    ``spread_time_zones`` each gets a regional tag and a zone of its language; with ``phones``
    each gets a mobile number ``+1 555 …`` (no such area code: it reaches nobody), so SMS
    reaches them."""
    now = utcnow()
    for i in range(start, count + 1):
        locale = locales[i % len(locales)]
        zone = "Europe/Berlin"
        if spread_time_zones:
            base = locale.split("-")[0]
            tags = DRILL_LOCALE_TAGS.get(base, (locale,))
            zones = DRILL_TIME_ZONES.get(base, ("UTC",))
            locale = tags[(i // len(locales)) % len(tags)]
            zone = zones[(i // len(locales)) % len(zones)]
        yield {
            "email": f"{prefix}{i:07d}@{domain}",
            "name": DRILL_NAMES[i % len(DRILL_NAMES)] or None,
            "locale": locale,
            "time_zone": zone,
            "lists": lists,
            "plan": "pro" if i % 3 == 0 else "starter",
            # +1 555 is no area code: a drill number reaches nobody, even by mistake
            "phone": f"+1555{i:07d}" if phones else None,
            "consent": True,
            "created_at": now,
        }


def ensure_drill_audience(session: Session, count: int, *,
                          locales: tuple[str, ...] = ("en",), spread_time_zones: bool = False,
                          press: int = 0) -> int:
    """Make sure ``count`` drill subscribers with mobile numbers (and ``press`` journalists on
    the press list, without) exist (idempotent for a persistent workspace)."""
    def existing(domain: str) -> int:
        return int(session.exec(
            select(func.count()).select_from(Recipient)
            .where(col(Recipient.email).endswith(f"@{domain}"))
        ).one())

    added = insert_recipients(session, drill_recipients(
        count, start=existing(DRILL_DOMAIN) + 1, locales=locales,
        spread_time_zones=spread_time_zones, phones=True))
    return added + insert_recipients(session, drill_recipients(
        press, domain=DRILL_PRESS_DOMAIN, start=existing(DRILL_PRESS_DOMAIN) + 1,
        locales=locales, spread_time_zones=spread_time_zones, lists=PRESS_LIST, prefix="press"))
