"""Shared access for dashboard pages: one cached engine per database URL."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import Engine

from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.settings import Settings


@st.cache_resource
def engine() -> Engine:
    settings = Settings()
    eng = make_engine(settings.resolved_database_url)
    init_db(eng)
    return eng
