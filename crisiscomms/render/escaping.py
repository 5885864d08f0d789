"""Data text in a personal message: a ``%`` that could open a substitution key is escaped.

Kept apart from :mod:`crisiscomms.render.environment` so the notices (which look for a fact's
escaped form in a rendered message) and the environment (which checks the notices after
rendering) do not import each other.
"""

from __future__ import annotations

import re
from typing import Any

PERCENT_TAG = "%at|pct|-|%"
"""A literal ``%`` of data (facts, Q&A) in a personal message. The provider fills every
substitution key wherever it appears, so a fact reading ``%first_name%`` would become the
recipient's name, and one reading like a time tag (``%at|time|garbage|%``) would crash the
publisher. In a data text where a ``%`` could open a key (a letter follows it), every ``%`` is
rendered as this tag instead; :func:`~crisiscomms.render.environment.time_tags` collects it and
:func:`~crisiscomms.render.environment.time_values` fills it back with ``%``, so the provider's
single left-to-right pass gives the fact's own text back. A ``%`` that cannot open a key
(``50% off``, ``{% for``) is left as it is."""
_KEYISH = re.compile(r"%[A-Za-z_]")


def escape_percent(value: str) -> str:
    """Data text as a personal message carries it (see :data:`PERCENT_TAG`)."""
    return value.replace("%", PERCENT_TAG) if _KEYISH.search(value) else value


def escape_data(value: Any) -> Any:
    """:func:`escape_percent` over every text of nested template data."""
    if isinstance(value, str):
        return escape_percent(value)
    if isinstance(value, dict):
        return {k: escape_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(escape_data(v) for v in value)
    return value


def limit_text(text: str) -> str:
    """The text limits are checked on: a data ``%`` is one character, not its tag."""
    return text.replace(PERCENT_TAG, "%") if PERCENT_TAG in text else text
