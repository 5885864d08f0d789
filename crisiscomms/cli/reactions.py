"""``crisiscomms reactions ...``: score texts, correct labels, train the triage model."""

from __future__ import annotations

from crisiscomms.cli.common import reactions_app

__all__ = ["reactions_app"]
