"""Database engine and sessions: SQLite file by default, any SQLAlchemy URL (PostgreSQL).

The schema is owned by Alembic (``crisiscomms/migrations``, shipped inside the package).
:func:`init_db` brings a database to the newest revision: an empty one is created by the
migrations, one made by the pre-Alembic ``create_all`` is checked against the baseline revision
and stamped (adoption), and one already at head costs a single query (then nothing, per engine).
See docs/database.md.
"""

from __future__ import annotations

import ast
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from crisiscomms.core.errors import CrisisCommsError

if TYPE_CHECKING:  # Alembic (and Mako, Pygments) load only when a migration runs: ~0.3 s+
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
BASELINE = "baseline"
"""The first revision: the schema ``create_all`` made before Alembic (see its module)."""
_PG_LOCK_KEY = 0x6372_6973_6973  # pg_advisory_xact_lock key: one migrator at a time ("crisis")

_at_head: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()


class SchemaError(CrisisCommsError):
    """The database cannot be brought to the current schema automatically."""


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, create the folder and turn on WAL and foreign keys."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# -- migrations ---------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None, *,
                   script_location: Path | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini, no URL): migrations run on
    ``connection``, passed to ``env.py`` as ``config.attributes["connection"]``.
    ``script_location``: another copy of the migrations (tests of a future revision)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@cache
def head_revisions() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this version, read from the revision
    files' ``revision`` / ``down_revision`` assignments without importing Alembic (the
    at-head check runs on every CLI command; a test compares this with Alembic's answer)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign):
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if not isinstance(target, ast.Name):
                continue
            if target.id == "revision":
                revisions.add(ast.literal_eval(value))
            elif target.id == "down_revision":
                down = ast.literal_eval(value)
                parents.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions - parents)


def _stamped(conn: Connection) -> frozenset[str]:
    if not inspect(conn).has_table("alembic_version"):
        return frozenset()
    return frozenset(str(v) for v in conn.execute(text("SELECT version_num FROM alembic_version"))
                     .scalars())


def current_revisions(engine: Engine) -> frozenset[str]:
    """The revision(s) the database is stamped with (empty: never migrated)."""
    with engine.connect() as conn:
        return _stamped(conn)


def baseline_schema() -> MetaData:
    """The schema of the baseline revision, frozen in its module (adoption checks against it)."""
    module = _script().get_revision(BASELINE).module
    schema: MetaData = module.schema()
    return schema


def init_db(engine: Engine) -> None:
    """Bring the database to the newest revision (idempotent; see the module docstring).

    Runs ``alembic upgrade head`` on one connection of ``engine``, in one transaction, under an
    advisory lock on PostgreSQL and a write lock on SQLite, so concurrent callers (workers
    starting together) migrate once. Raises :class:`SchemaError` for a pre-Alembic database
    that does not have the baseline's tables and columns."""
    if engine in _at_head:
        return
    with _lock:
        if engine in _at_head:
            return
        if current_revisions(engine) != head_revisions():  # one query; no lock when at head
            migrate(engine, "head")
        _at_head.add(engine)


def migrate(engine: Engine, revision: str = "head", *, downgrade: bool = False,
            script_location: Path | None = None) -> None:
    """Upgrade (or with ``downgrade`` downgrade) to ``revision``; adopts a pre-Alembic
    database first. Forgets any "already at head" knowledge about ``engine``."""
    from alembic import command

    _at_head.discard(engine)
    with _migration_connection(engine) as conn:
        current = _stamped(conn)
        if (not downgrade and revision == "head" and script_location is None
                and current == head_revisions()):
            return
        config = alembic_config(conn, script_location=script_location)
        if not current and not downgrade and _has_baseline_tables(conn):
            _adopt(conn)
            command.stamp(config, BASELINE)
        if downgrade:
            command.downgrade(config, revision)
        elif script_location is None:
            _upgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _upgrade(config: Config, revision: str) -> None:
    """``alembic.command.upgrade`` with the cached ScriptDirectory (revision files are read once
    per process, not once per database: init_db runs for every new test database)."""
    from alembic.runtime.environment import EnvironmentContext

    script = _script()

    def steps(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs(revision, rev)

    with EnvironmentContext(config, script, fn=steps, destination_rev=revision):
        script.run_env()


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """One connection, one transaction, committed at the end; rolled back on error."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # SQLite alters a table by copying it (batch mode): DROP TABLE must not cascade or
            # fail on foreign keys meanwhile (the pragma is a no-op inside a transaction, so
            # first), and BEGIN IMMEDIATE takes the write lock the driver would not take for DDL.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        try:
            yield conn
            if sqlite:
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise SchemaError(f"migration left foreign key violations: {problems[:5]}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _has_baseline_tables(conn: Connection) -> bool:
    present = set(inspect(conn).get_table_names())
    return any(name in present for name in baseline_schema().tables)


def _adopt(conn: Connection) -> None:
    """Bring a database made by the pre-Alembic ``init_db`` to the baseline shape, as that code
    would have (create missing tables, add missing nullable columns, plus the unique constraints
    the old additive step left out), then check it against the baseline exactly."""
    from alembic.autogenerate import compare_metadata
    from alembic.operations import Operations, ops
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import Index, UniqueConstraint

    baseline = baseline_schema()
    context = MigrationContext.configure(conn, opts={"render_as_batch": True})
    op = Operations(context)
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    for table in baseline.sorted_tables:
        if table.name not in present:
            op.invoke(ops.CreateTableOp.from_table(table))
            for index in table.indexes:
                op.invoke(ops.CreateIndexOp.from_index(index))
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in have]
        required = [c.name for c in missing if not c.nullable]
        if required:
            raise SchemaError(f"table {table.name} lacks required columns {required}: this "
                              "database was not made by crisiscomms, or by a version too old to "
                              "adopt; migrate its data into a new database")
        for column in missing:
            op.add_column(table.name, column._copy())

    unfixable: list[str] = []
    for diff in _flatten(compare_metadata(MigrationContext.configure(conn), baseline)):
        kind, obj = diff[0], diff[1] if len(diff) > 1 else None
        if kind == "add_constraint" and isinstance(obj, UniqueConstraint):
            columns = [c.name for c in obj.columns]
            # the name PostgreSQL gives an unnamed one, as create_all would have made it
            name = obj.name if isinstance(obj.name, str) else "_".join([obj.table.name, *columns,
                                                                        "key"])
            with op.batch_alter_table(obj.table.name) as batch:
                batch.create_unique_constraint(name, columns)
        elif kind == "add_index" and isinstance(obj, Index):
            op.invoke(ops.CreateIndexOp.from_index(obj))
        else:
            unfixable.append(repr(diff))
    if unfixable:
        raise SchemaError("this database differs from the baseline schema in ways crisiscomms "
                          "will not change by itself: " + "; ".join(unfixable[:10]))


def _flatten(diffs: list[Any]) -> Iterator[tuple[Any, ...]]:
    for diff in diffs:
        if isinstance(diff, list):  # column modifications come grouped per column
            yield from (tuple(d) for d in diff)
        else:
            yield tuple(diff)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
