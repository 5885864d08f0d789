"""Recipients out as CSV (``crisiscomms recipients export``): the columns an import takes, so
an export can be edited and imported elsewhere, never a token; cells neutralised for
spreadsheets (:mod:`crisiscomms.core.spreadsheet`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.spreadsheet import write_csv

EXPORT_COLUMNS = ("email", "name", "locale", "time_zone", "plan", "product", "order_ref",
                  "lists", "unsubscribed")
"""Import columns (``audience/import_rows.ALLOWED_COLUMNS``); ``unsubscribed`` is ``not
consent``."""
_YIELD_PER = 5000


def _rows(engine: Engine) -> Iterator[tuple[object, ...]]:
    query = select(col(Recipient.email), col(Recipient.name), col(Recipient.locale),
                   col(Recipient.time_zone), col(Recipient.plan), col(Recipient.product),
                   col(Recipient.order_ref), col(Recipient.lists), col(Recipient.consent)
                   ).order_by(col(Recipient.id)).execution_options(yield_per=_YIELD_PER)
    with engine.connect() as conn:
        for *values, consent in conn.execute(query):
            yield (*("" if v is None else v for v in values), "false" if consent else "true")


def export_csv(engine: Engine, handle: TextIO) -> int:
    """Every recipient as CSV into ``handle`` (streamed); how many were written."""
    return write_csv(handle, EXPORT_COLUMNS, _rows(engine))
