"""Where a polling source stopped, kept in the database (``ListenCursor``).

A poller that kept its place in memory would, after a restart, either read everything again
(wasting a rate-limited budget) or start from "now" and miss what came while it was down. The
cursor is written in the same transaction as the reactions it covers, so the two cannot
disagree: a crash between them leaves the old cursor, and the re-read posts are ignored as
duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from crisiscomms.core.clock import utcnow
from crisiscomms.reactions.models import ListenCursor


@dataclass(frozen=True, slots=True)
class TimelineCursor:
    """An X-style newest-first timeline's place: ``since_id`` (everything up to it is read)
    and, while a backlog is being read page by page across polls, ``until_id`` (the oldest
    post read so far) and ``newest_id`` (the newest post of the backlog, the next
    ``since_id`` once the backlog is read)."""

    since_id: str | None = None
    until_id: str | None = None
    newest_id: str | None = None

    @property
    def catching_up(self) -> bool:
        return self.until_id is not None

    def dumps(self) -> str:
        return json.dumps({k: v for k, v in (("since_id", self.since_id),
                                             ("until_id", self.until_id),
                                             ("newest_id", self.newest_id)) if v is not None},
                          separators=(",", ":"))

    @classmethod
    def loads(cls, value: str | None) -> TimelineCursor:
        """From the stored value; a value that is not ours (hand-edited, damaged) starts over
        from nothing rather than failing the poller forever."""
        if not value:
            return cls()
        try:
            data = json.loads(value)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        ids = {k: str(v) for k, v in data.items()
               if k in ("since_id", "until_id", "newest_id") and str(v).isdigit()}
        return cls(ids.get("since_id"), ids.get("until_id"), ids.get("newest_id"))


def load_cursor(session: Session, source: str, key: str) -> str | None:
    """The stored value for (``source``, ``key``), or None."""
    return session.exec(select(ListenCursor.value).where(
        col(ListenCursor.source) == source, col(ListenCursor.key) == key)).first()


def load_cursors(session: Session, source: str) -> dict[str, tuple[str, datetime]]:
    """Every cursor of ``source``: key -> (value, when it was last saved)."""
    return {str(key): (str(value), at) for key, value, at in session.execute(
        select(col(ListenCursor.key), col(ListenCursor.value), col(ListenCursor.updated_at))
        .where(col(ListenCursor.source) == source)).all()}


def save_cursor(session: Session, source: str, key: str, value: str) -> None:
    """Insert or update (``source``, ``key``); the caller commits (with the reactions)."""
    row = session.exec(select(ListenCursor).where(
        col(ListenCursor.source) == source, col(ListenCursor.key) == key)).first()
    if row is None:
        session.add(ListenCursor(source=source, key=key, value=value))
    else:
        row.value = value
        row.updated_at = utcnow()
        session.add(row)
    session.flush()
