"""The source checkout the tests run from: its root is also the example workspace (it holds
``crisiscomms.toml``, ``playbooks/`` and ``templates/``), which a wheel ships as
``crisiscomms/_example``."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
