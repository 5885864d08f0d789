"""The executive overview's reads, cached for one refresh interval.

Every viewer's page refreshes itself (``st.fragment(run_every=...)``); without a cache, ten
executives watching means ten copies of every aggregate per interval. Each function here is
``st.cache_data`` keyed on the database URL, its arguments and ``tick``, the number of the
current refresh interval (``time // refresh``): within one interval every viewer gets the same
answer from memory, and the next interval reads the database once again. Nothing here holds
SQL: each calls a domain view.
"""

from __future__ import annotations

import time

import streamlit as st
from sqlmodel import Session

from crisiscomms.dashboard.data import engine_at
from crisiscomms.delivery.views import Reach, ReachPoint, reach, reach_over_time
from crisiscomms.incident.metrics import IncidentGlance, incidents_at_a_glance
from crisiscomms.reactions.trends import Csat, TrendBucket, csat, reaction_trend
from crisiscomms.reactions.views import SpikeRow, spikes

_ENTRIES = 256


def tick(refresh_s: int) -> int:
    """The number of the current ``refresh_s`` interval: part of every cache key here."""
    return int(time.time() // refresh_s)


@st.cache_data(show_spinner=False, max_entries=_ENTRIES)
def glance(url: str, include_drills: bool, tick: int) -> list[IncidentGlance]:
    with Session(engine_at(url)) as session:
        return incidents_at_a_glance(session, include_drills=include_drills)


@st.cache_data(show_spinner=False, max_entries=_ENTRIES)
def channel_reach(url: str, incident_id: int, tick: int) -> list[Reach]:
    with Session(engine_at(url)) as session:
        return reach(session, incident_id)


@st.cache_data(show_spinner=False, max_entries=_ENTRIES)
def reach_timeline(url: str, incident_id: int, bucket_minutes: int,
                   tick: int) -> list[ReachPoint]:
    with Session(engine_at(url)) as session:
        return reach_over_time(session, incident_id, bucket_minutes=bucket_minutes)


@st.cache_data(show_spinner=False, max_entries=_ENTRIES)
def reactions_timeline(url: str, incident_id: int, bucket_minutes: int,
                       tick: int) -> list[TrendBucket]:
    with Session(engine_at(url)) as session:
        return reaction_trend(session, incident_id, bucket_minutes=bucket_minutes)


@st.cache_data(show_spinner=False, max_entries=_ENTRIES)
def satisfaction(url: str, incident_id: int, tick: int) -> Csat:
    with Session(engine_at(url)) as session:
        return csat(session, incident_id)


@st.cache_data(show_spinner=False, max_entries=_ENTRIES)
def incident_spikes(url: str, incident_ref: str, tick: int) -> list[SpikeRow]:
    with Session(engine_at(url)) as session:
        return spikes(session, incident_ref)
