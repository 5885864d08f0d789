"""Alembic migrations for both backends (SQLite and PostgreSQL); see docs/database.md.

``env.py`` and ``versions/`` ship inside the package so an installed ``crisiscomms`` finds them;
:func:`crisiscomms.db.init_db` runs them.
"""
