"""Alembic migrations on both backends (SQLite and a throwaway PostgreSQL): an empty database
is upgraded to exactly the models' schema, downgrades and upgrades again, a pre-Alembic
``create_all`` database is adopted, init_db is idempotent and safe to run concurrently, and a
later revision (a test-only copy of the migrations) alters a referenced table on SQLite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from crisiscomms.core.database import (
    MIGRATIONS_DIR,
    SchemaError,
    baseline_schema,
    current_revisions,
    head_revisions,
    init_db,
    make_engine,
    migrate,
)

pytestmark = pytest.mark.integration

GUARD = ("crisiscomms/models.py and the migrations disagree: write a migration "
         "(docs/database.md, 'Writing a migration'): {}")


def diffs(engine: Engine, metadata: sa.MetaData | None = None) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn),
                                     metadata if metadata is not None else SQLModel.metadata))


def tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


@pytest.fixture
def fresh(db_url: str):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def seed_incident(engine: Engine) -> None:
    """An incident, a message and a delivery that references both (foreign keys in play)."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO incident (id, ref, playbook, title, severity, status, drill, created_at,"
            " updated_at) VALUES (1, 'INC-1', 'outage', 'Down', 'major', 'investigating', false,"
            " '2026-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00')"))
        conn.execute(sa.text(
            "INSERT INTO message (id, incident_id, stage, facts_version, channel, locale,"
            " parts_json, content_hash, template_hashes_json, created_at) VALUES (1, 1, 'ack', 1,"
            " 'email', 'en', '{}', 'h', '{}', '2026-01-01 00:00:00+00:00')"))
        conn.execute(sa.text(
            "INSERT INTO delivery (key, incident_id, message_id, channel, locale, batch_no,"
            " recipient_ids, recipient_count, state, attempts, created_at, updated_at) VALUES"
            " ('k1', 1, 1, 'email', 'en', 0, '1', 1, 'planned', 0, '2026-01-01 00:00:00+00:00',"
            " '2026-01-01 00:00:00+00:00')"))


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- from empty ---------------------------------------------------------------------------------


def test_upgrade_from_empty_creates_exactly_the_models(fresh: Engine) -> None:
    """The guard: a model change without a migration fails here on both backends."""
    assert tables(fresh) == set()
    init_db(fresh)
    found = diffs(fresh)
    assert found == [], GUARD.format(found)
    assert tables(fresh) == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert current_revisions(fresh) == head_revisions()


def test_downgrade_to_base_and_upgrade_again(fresh: Engine) -> None:
    init_db(fresh)
    seed_incident(fresh)
    migrate(fresh, "base", downgrade=True)
    assert tables(fresh) == {"alembic_version"}
    assert current_revisions(fresh) == frozenset()
    if fresh.dialect.name == "postgresql":
        with fresh.connect() as conn:
            types = conn.execute(sa.text("SELECT typname FROM pg_type WHERE typname IN "
                                         "('incidentstatus', 'deliverystate')")).all()
        assert types == []
    init_db(fresh)  # migrate() forgot that this engine was at head
    assert diffs(fresh) == []
    assert count(fresh, "incident") == 0


def test_init_db_twice_is_a_no_op(fresh: Engine, db_url: str) -> None:
    init_db(fresh)
    seed_incident(fresh)
    other = make_engine(db_url)  # a new process would have a new engine: no cache
    statements: list[str] = []
    sa.event.listen(other, "before_cursor_execute",
                    lambda _c, _cur, stmt, *_a: statements.append(stmt))
    init_db(other)
    init_db(other)
    assert statements, "the first call on an engine checks the revision"
    assert all(s.lstrip().upper().startswith(("SELECT", "PRAGMA")) for s in statements), statements
    n = len(statements)
    init_db(other)
    assert len(statements) == n  # known to be at head: not even a query
    assert count(other, "delivery") == 1 and diffs(other) == []
    other.dispose()


def test_concurrent_first_runs_migrate_once(fresh: Engine, db_url: str) -> None:
    """Two processes starting on an empty database (workers starting together)."""
    code = "import sys; from crisiscomms.core.database import init_db, make_engine; " \
           "init_db(make_engine(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert current_revisions(fresh) == head_revisions()
    assert diffs(fresh) == []


# -- adopting a pre-Alembic database ------------------------------------------------------------

SUBSCRIPTION_COLUMNS = ("components", "confirmed_at", "unsubscribe_token", "confirm_token",
                        "confirm_sent_at")


def legacy_schema(*, subscription_columns: str) -> sa.MetaData:
    """The baseline as an older crisiscomms left it: ``absent`` (before status page
    subscriptions) or ``unconstrained`` (added by the old additive step: no UNIQUE)."""
    base = baseline_schema()
    legacy = sa.MetaData()
    for table in base.sorted_tables:
        if table.name != "recipient":
            table.to_metadata(legacy)
            continue
        columns = [c._copy() for c in table.columns
                   if subscription_columns != "absent" or c.name not in SUBSCRIPTION_COLUMNS]
        for column in columns:
            column.unique = None
        sa.Table("recipient", legacy, *columns, sa.UniqueConstraint("email"))
    return legacy


def test_a_create_all_database_is_adopted(fresh: Engine) -> None:
    """What the pre-Alembic ``init_db`` made (its ``create_all`` = the baseline revision)."""
    baseline_schema().create_all(fresh)
    seed_incident(fresh)
    init_db(fresh)
    assert current_revisions(fresh) == head_revisions()
    assert diffs(fresh) == []
    assert count(fresh, "delivery") == 1


@pytest.mark.parametrize("subscription_columns", ["absent", "unconstrained"])
def test_an_older_database_is_completed_then_adopted(fresh: Engine,
                                                     subscription_columns: str) -> None:
    legacy_schema(subscription_columns=subscription_columns).create_all(fresh)
    seed_incident(fresh)
    with fresh.begin() as conn:
        conn.execute(sa.text("INSERT INTO recipient (email, locale, time_zone, consent, created_at)"
                             " VALUES ('Old@x.com', 'en', 'UTC', true, '2026-01-01 00:00:00')"))
    assert diffs(fresh, baseline_schema()) != []
    init_db(fresh)
    assert current_revisions(fresh) == head_revisions()
    assert diffs(fresh) == []
    with fresh.connect() as conn:
        assert conn.execute(sa.text("SELECT email FROM recipient")).scalar_one() == "old@x.com"
    with pytest.raises(sa.exc.IntegrityError), fresh.begin() as conn:  # UNIQUE is now there
        conn.execute(sa.text("INSERT INTO recipient (email, locale, time_zone, consent, created_at,"
                             " unsubscribe_token) VALUES ('a@x.com', 'en', 'UTC', true,"
                             " '2026-01-01 00:00:00', 't'), ('b@x.com', 'en', 'UTC', true,"
                             " '2026-01-01 00:00:00', 't')"))


def test_a_foreign_shape_is_refused_and_left_untouched(fresh: Engine) -> None:
    with fresh.begin() as conn:
        conn.execute(sa.text("CREATE TABLE recipient (id INTEGER PRIMARY KEY, addr VARCHAR(10))"))
    with pytest.raises(SchemaError, match="lacks required columns"):
        init_db(fresh)
    assert tables(fresh) == {"recipient"}
    assert {c["name"] for c in sa.inspect(fresh).get_columns("recipient")} == {"id", "addr"}


# -- a later revision -----------------------------------------------------------------------------

EXTRA_REVISION = '''
"""test only: incident.nickname"""
import sqlalchemy as sa
from alembic import op

revision = "test_extra"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.add_column(sa.Column("nickname", sa.String(length=64), nullable=True))
        batch.create_index("ix_incident_nickname", ["nickname"])


def downgrade() -> None:
    with op.batch_alter_table("incident") as batch:  # SQLite: copies the table
        batch.drop_index("ix_incident_nickname")
        batch.drop_column("nickname")
'''


def test_a_later_revision_upgrades_and_downgrades_a_referenced_table(fresh: Engine,
                                                                     tmp_path: Path) -> None:
    """On SQLite, dropping a column copies ``incident``, which ``delivery`` references: the
    migration runs with foreign keys off and checks them before committing."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (head,) = head_revisions()
    (scripts / "versions" / "test_extra.py").write_text(
        textwrap.dedent(EXTRA_REVISION.format(head=head)), encoding="utf-8")
    init_db(fresh)
    seed_incident(fresh)
    migrate(fresh, "head", script_location=scripts)
    assert current_revisions(fresh) == {"test_extra"}
    assert "nickname" in {c["name"] for c in sa.inspect(fresh).get_columns("incident")}
    assert "ix_incident_nickname" in {i["name"] for i in sa.inspect(fresh).get_indexes("incident")}
    migrate(fresh, "-1", downgrade=True, script_location=scripts)
    assert current_revisions(fresh) == head_revisions()
    assert diffs(fresh) == []
    assert count(fresh, "incident") == 1 and count(fresh, "delivery") == 1


# -- the alembic command line from a checkout (docs/database.md) ----------------------------------


def test_the_alembic_command_line_works_from_a_checkout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    alembic = [sys.executable, "-m", "alembic", "-x", f"url={url}"]
    for args in (["upgrade", "head"], ["check"]):  # check: autogenerate finds nothing to do
        done = subprocess.run([*alembic, *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert url not in done.stdout + done.stderr
    with make_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() \
            == sorted(head_revisions())


# -- data migrations -----------------------------------------------------------------------------


def test_pending_confirm_tokens_are_hashed_in_place(fresh: Engine) -> None:
    """A link mailed before the upgrade still confirms after it: the plain token stored then
    is replaced by its SHA-256; a hash already there is left alone; downgrade clears them."""
    import hashlib

    migrate(fresh, "a31dc4d559b8")
    plain, hashed = "p" * 32, "h" * 64
    with fresh.begin() as conn:
        for rid, email, token in ((1, "old@example.org", plain), (2, "new@example.org", hashed),
                                  (3, "done@example.org", None)):
            conn.execute(sa.text(
                "INSERT INTO recipient (id, email, locale, time_zone, consent, created_at,"
                " unsubscribe_token, confirm_token) VALUES (:id, :email, 'en', 'UTC', false,"
                " '2026-01-01 00:00:00+00:00', :u, :c)"),
                {"id": rid, "email": email, "u": f"u{rid}", "c": token})
    migrate(fresh, "b7e4c2d91f03")

    def tokens() -> dict[int, str | None]:
        with fresh.connect() as conn:
            return {int(r[0]): r[1] for r in conn.execute(
                sa.text("SELECT id, confirm_token FROM recipient"))}

    assert tokens() == {1: hashlib.sha256(plain.encode()).hexdigest(), 2: hashed, 3: None}
    migrate(fresh, "a31dc4d559b8", downgrade=True)
    assert tokens() == {1: None, 2: None, 3: None}
