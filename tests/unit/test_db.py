"""crisiscomms.core.database on SQLite: migrations ship in the package, one head, init_db is
idempotent and cheap at head, and the guard: the models and the migrations describe the same
schema."""

from __future__ import annotations

import tomllib

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from crisiscomms.core.database import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revisions,
    head_revisions,
    init_db,
    make_engine,
)


def test_models_and_migrations_agree(engine: Engine) -> None:
    """Fails when crisiscomms/models.py changes without a migration. Write one:
    ``uv run alembic -x url=sqlite:///scratch.db upgrade head`` then
    ``uv run alembic -x url=sqlite:///scratch.db revision --autogenerate -m "what changed"``,
    review it, and run tests/integration/test_migrations.py (docs/database.md)."""
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diffs == [], f"models.py and the migrations disagree, write a migration: {diffs}"


def test_migrations_ship_inside_the_package() -> None:
    assert MIGRATIONS_DIR.parent == PROJECT_ROOT / "crisiscomms"
    assert (MIGRATIONS_DIR / "env.py").is_file() and (MIGRATIONS_DIR / "script.py.mako").is_file()
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "crisiscomms" in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


def test_alembic_ini_points_at_the_packaged_migrations() -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    assert config.get_main_option("sqlalchemy.url") is None  # never a URL in the file
    assert ScriptDirectory.from_config(config).dir == str(MIGRATIONS_DIR)


def test_one_linear_history_and_the_fast_head_reader_agrees_with_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, "branched migrations: merge them (alembic merge heads)"
    assert head_revisions() == frozenset(script.get_heads())
    revisions = list(script.walk_revisions())
    assert revisions[-1].revision == "baseline"
    for rev in revisions:
        assert callable(rev.module.upgrade) and callable(rev.module.downgrade), rev.revision


def test_the_code_config_carries_a_connection_not_a_url(engine: Engine) -> None:
    with engine.connect() as conn:
        config = alembic_config(conn)
        assert config.attributes["connection"] is conn
        assert config.get_main_option("sqlalchemy.url") is None


def test_init_db_at_head_only_reads_and_then_is_free(engine: Engine) -> None:
    assert current_revisions(engine) == head_revisions()
    other = make_engine(str(engine.url))
    statements: list[str] = []
    sa.event.listen(other, "before_cursor_execute",
                    lambda _c, _cur, stmt, *_a: statements.append(stmt))
    init_db(other)
    assert statements and all(s.lstrip().upper().startswith(("SELECT", "PRAGMA"))
                              for s in statements)
    n = len(statements)
    init_db(other)
    assert len(statements) == n
    other.dispose()


def test_autogenerate_renders_plain_sqlalchemy_types() -> None:
    from crisiscomms.migrations import render_item

    assert render_item("type", AutoString(length=64), None) == "sa.String(length=64)"
    assert render_item("type", AutoString(), None) == "sa.String()"
    assert render_item("type", UTCDateTime(), None) == "sa.DateTime(timezone=True)"
    assert render_item("type", sa.Integer(), None) is False
