"""Recipients: bulk import and the generated drill audience."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from crisiscomms.models import Recipient, utcnow

DRILL_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus",
               "Margaret Hamilton", "", "Zoë O'Brien", "Dennis Ritchie", "Hedy Lamarr")
INSERT_CHUNK = 5000
DRILL_DOMAIN = "drill.example.com"


def insert_recipients(session: Session, rows: Iterable[dict[str, object]]) -> int:
    """Bulk-insert recipient rows (one statement per ``INSERT_CHUNK`` rows)."""
    total = 0
    chunk: list[dict[str, object]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= INSERT_CHUNK:
            session.execute(insert(Recipient), chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        session.execute(insert(Recipient), chunk)
        total += len(chunk)
    return total


def drill_recipients(count: int, *, domain: str = DRILL_DOMAIN, start: int = 1,
                     locales: tuple[str, ...] = ("en",)) -> Iterable[dict[str, object]]:
    """Synthetic subscribers ``start``..``count`` at a reserved example domain."""
    now = utcnow()
    for i in range(start, count + 1):
        yield {
            "email": f"subscriber{i:07d}@{domain}",
            "name": DRILL_NAMES[i % len(DRILL_NAMES)] or None,
            "locale": locales[i % len(locales)],
            "time_zone": "Europe/Berlin",
            "plan": "pro" if i % 3 == 0 else "starter",
            "consent": True,
            "created_at": now,
        }


def ensure_drill_audience(session: Session, count: int, *,
                          locales: tuple[str, ...] = ("en",)) -> int:
    """Make sure ``count`` drill subscribers exist (idempotent for a persistent workspace)."""
    existing = session.exec(
        select(func.count()).select_from(Recipient)
        .where(col(Recipient.email).endswith(f"@{DRILL_DOMAIN}"))
    ).one()
    return insert_recipients(session, drill_recipients(count, start=int(existing) + 1,
                                                       locales=locales))
