"""Shared access for dashboard pages: the settings, one cached engine per database URL."""

from __future__ import annotations

import os

import streamlit as st
from sqlalchemy.engine import Engine

from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.settings import ENV_PREFIX, Settings

SETTINGS_TTL_S = 10
"""How long a read of the settings is shared: building ``Settings`` costs 25-60 ms (the
workspace search, ``.env``, validation), which every page run paid; a changed ``.env`` shows
within this many seconds."""


@st.cache_resource(show_spinner=False, ttl=SETTINGS_TTL_S, max_entries=8)
def _settings(environment: tuple[tuple[str, str], ...], cwd: str) -> Settings:
    return Settings()


def settings() -> Settings:
    """This workspace's settings, shared for ``SETTINGS_TTL_S`` by every run with the same
    ``CRISISCOMMS_*`` environment and working folder (so a test's or a changed variable gets
    its own). Treat it as read-only."""
    environment = tuple(sorted((k, v) for k, v in os.environ.items()
                               if k.startswith(ENV_PREFIX)))
    return _settings(environment, os.getcwd())


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
