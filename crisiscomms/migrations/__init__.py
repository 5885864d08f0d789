"""Alembic migrations for both backends (SQLite and PostgreSQL); see docs/database.md.

``env.py`` and ``versions/`` ship inside the package so an installed ``crisiscomms`` finds them;
:func:`crisiscomms.core.database.init_db` runs them.
"""

from __future__ import annotations

from typing import Any

from sqlmodel.sql.sqltypes import AutoString, UTCDateTime


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render SQLModel's types as the plain SQLAlchemy types they compile to, so revisions import
    no SQLModel internals: ``AutoString`` → ``sa.String``, ``UTCDateTime`` →
    ``sa.DateTime(timezone=True)`` (TIMESTAMPTZ on PostgreSQL, DATETIME on SQLite)."""
    if kind == "type" and isinstance(obj, AutoString):
        length = getattr(obj.impl, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False
