"""Shared access for dashboard pages: the settings, one cached engine per database URL."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import Engine

from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.settings import Settings


def settings() -> Settings:
    """This workspace's settings (read each run: cheap, and a changed ``.env`` shows)."""
    return Settings()


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    eng = make_engine(url)
    init_db(eng)
    return eng


def engine() -> Engine:
    """The configured database's engine, shared by every session of this process (keyed on
    the URL, so a test or a changed setting gets its own)."""
    return _engine(settings().resolved_database_url)


def engine_for(current: Settings) -> Engine:
    """The engine of settings a page already read: building ``Settings`` costs tens of
    milliseconds (the workspace search, ``.env``, validation), so a page that needs both reads
    them once."""
    return _engine(current.resolved_database_url)


def engine_at(url: str) -> Engine:
    """The engine of a database URL a page already has (a cached read keyed on it)."""
    return _engine(url)
