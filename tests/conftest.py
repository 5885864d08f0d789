"""Shared fixtures: a real SQLite database per test, the repository's playbooks and templates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine

from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.settings import Settings

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
        mode="drill",  # the example workspace's approvals are provisional: good for rehearsals
    )


# -- both backends (issue 6): a throwaway PostgreSQL cluster per session ------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """initdb + pg_ctl in a temp dir (as a non-root user when run as root); skipped where no
    PostgreSQL server binaries exist, except on CI, where ``.ci/run`` installs them."""
    import os

    from crisiscomms.testing.pgcluster import PostgresUnavailable, ThrowawayCluster

    try:
        cluster = ThrowawayCluster().start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    import uuid

    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database(f"t_{uuid.uuid4().hex[:12]}"))  # type: ignore[attr-defined]


@pytest.fixture
def backend_engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def process_rate_limits() -> Iterator[None]:
    """Each process's own token buckets, before and after the test: no Prefect global
    concurrency limit left named by another test (``use_global_rate_limits``)."""
    from crisiscomms.delivery.rate_limits import use_global_rate_limits

    use_global_rate_limits({})
    yield
    use_global_rate_limits({})
