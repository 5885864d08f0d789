"""Locale resolution: a recipient's locale picks a variant through a fallback chain."""

from __future__ import annotations

from collections.abc import Sequence


def fallback_chain(requested: str, default: str) -> list[str]:
    """``es-MX`` → ``[es-MX, es, <default>]`` (underscores accepted, duplicates removed)."""
    tag = requested.replace("_", "-").strip()
    chain: list[str] = []
    parts = tag.split("-") if tag else []
    while parts:
        chain.append("-".join(parts))
        parts.pop()
    chain.append(default)
    return list(dict.fromkeys(c for c in chain if c))


def resolve_locale(requested: str | None, available: Sequence[str], default: str) -> str:
    """The first locale of the fallback chain that the playbook has."""
    lowered = {a.lower(): a for a in available}
    for candidate in fallback_chain(requested or default, default):
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return default
