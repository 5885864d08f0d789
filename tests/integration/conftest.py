"""Real servers on loopback: the emulators and one shared Prefect test server per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.testing.audiences import drill_recipients
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, start_emulators

SENDGRID_KEY = "SG.integration-test-key"
X_TOKEN = "x-integration-test-token"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the whole session (the first start takes 10-18 s)."""
    home = tempfile.mkdtemp(prefix="crisiscomms-prefect-")
    os.environ.update({"PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING"})
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def emulators() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SENDGRID_KEY, x_token=X_TOKEN) as pair:
        yield pair


@pytest.fixture
def workspace(tmp_path: Path, emulators: EmulatorPair,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Engine]]:
    """A fresh data folder and SQLite database wired to the emulators through the environment."""
    yield from _workspace(tmp_path, emulators, monkeypatch,
                          f"sqlite:///{tmp_path / 'crisiscomms.db'}")


@pytest.fixture
def backend_workspace(tmp_path: Path, emulators: EmulatorPair, monkeypatch: pytest.MonkeyPatch,
                      db_url: str) -> Iterator[tuple[Settings, Engine]]:
    """``workspace`` on each backend: SQLite and a throwaway PostgreSQL database."""
    yield from _workspace(tmp_path, emulators, monkeypatch, db_url)


def _workspace(tmp_path: Path, emulators: EmulatorPair, monkeypatch: pytest.MonkeyPatch,
               db_url: str) -> Iterator[tuple[Settings, Engine]]:
    emulators.reset()
    env = {
        **workspace_environment(tmp_path / "data", emulators, SENDGRID_KEY, X_TOKEN,
                                database_url=db_url),
        "CRISISCOMMS_MAX_ATTEMPTS": "2",
        "CRISISCOMMS_HTTP_TIMEOUT_S": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(1000))
    yield settings, engine
    engine.dispose()


@pytest.fixture
def dashboard_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A fresh SQLite database and data folder for dashboard pages (AppTest runs them in this
    process: the settings come from the environment, the workspace is the repository's, drill
    mode); Streamlit's caches are cleared before and after."""
    import streamlit as st

    from crisiscomms.core.database import init_db, make_engine

    url = f"sqlite:///{tmp_path / 'crisiscomms.db'}"
    monkeypatch.setenv("CRISISCOMMS_DATABASE_URL", url)
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRISISCOMMS_MODE", "drill")
    st.cache_resource.clear()
    st.cache_data.clear()
    engine = make_engine(url)
    init_db(engine)
    yield engine
    engine.dispose()
    st.cache_resource.clear()
    st.cache_data.clear()
