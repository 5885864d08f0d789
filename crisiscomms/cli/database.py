"""The database schema (Alembic migrations)."""

from __future__ import annotations

from crisiscomms.cli import common
from crisiscomms.cli.common import db_app, out


@db_app.command("status")
def db_status() -> None:
    """The revision the database is at, beside the newest the code knows."""
    from crisiscomms.core.database import current_revisions, head_revisions, make_engine

    engine = make_engine(common.load_settings().resolved_database_url)
    current, head = common.run_or_exit(lambda: (current_revisions(engine), head_revisions()))
    state = "up to date" if current == head else "behind: run crisiscomms db upgrade"
    out.print(f"database at {', '.join(sorted(current)) or 'no revision'}; "
              f"newest {', '.join(sorted(head))} ({state})")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest revision (every command also does this first)."""
    from crisiscomms.core.database import current_revisions

    engine = common.open_engine(common.load_settings())
    out.print(f"database at {', '.join(sorted(current_revisions(engine)))}")

