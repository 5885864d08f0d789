"""What an import must leave as it found it: ``recipient``'s indexes and its columns' defaults,
read the same way on both backends (the import tests compare them before and after)."""

from __future__ import annotations

from sqlalchemy.engine import Engine


def _rows(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(query)]


def recipient_indexes(engine: Engine) -> list[tuple[object, ...]]:
    """Each index of ``recipient``: its name and definition, by name."""
    return _rows(engine, (
        "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'recipient' ORDER BY name"
        if engine.dialect.name == "sqlite" else
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'recipient' "
        "ORDER BY indexname"))


def recipient_defaults(engine: Engine) -> list[tuple[object, ...]]:
    """Each column of ``recipient`` and its default (a PostgreSQL import lends ``created_at``
    one for the length of its transaction)."""
    return _rows(engine, (
        "SELECT name, dflt_value FROM pragma_table_info('recipient') ORDER BY name"
        if engine.dialect.name == "sqlite" else
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_name = 'recipient' ORDER BY column_name"))
