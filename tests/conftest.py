"""Shared fixtures: a real SQLite database per test, the repository's playbooks and templates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from crisiscomms.config import PROJECT_ROOT, Settings
from crisiscomms.db import init_db, make_engine

PLAYBOOKS = PROJECT_ROOT / "playbooks"
TEMPLATES = PROJECT_ROOT / "templates"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'test.db'}",
        playbooks_dir=PLAYBOOKS,
        templates_dir=TEMPLATES,
    )
