"""The dashboard's reactions page, run by Streamlit's AppTest against a real SQLite database:
counts, the flagged list with reasons, spikes, texts shown as data (never as HTML)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dashboard_apptest import open_page
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import crisiscomms
from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.identity.roles import Role
from crisiscomms.incident.models import Incident
from crisiscomms.playbook.listening import SpikePolicy
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment
from crisiscomms.reactions.spikes import detect_spikes

pytestmark = pytest.mark.integration

PAGE = Path(crisiscomms.__file__).parent / "dashboard" / "reactions_page.py"
HOSTILE = "<img src=x onerror=alert(1)> **not bold** still down"


@pytest.fixture
def page_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    import streamlit as st

    url = f"sqlite:///{tmp_path / 'crisiscomms.db'}"
    monkeypatch.setenv("CRISISCOMMS_DATABASE_URL", url)
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    st.cache_resource.clear()  # the page's engine is cached per process
    engine = make_engine(url)
    init_db(engine)
    yield engine
    engine.dispose()
    st.cache_resource.clear()


def fill(engine: Engine) -> None:
    # the middle of the last whole 5-minute window: the 24 reactions (28 s) never straddle a
    # window edge, which split them below min_volume about one run in ten
    real = utcnow().replace(second=0, microsecond=0)
    now = real - timedelta(minutes=real.minute % 5 + 5) + timedelta(seconds=150)
    with Session(engine) as session:
        for ref in ("INC-QUIET", "INC-LOUD"):
            session.add(Incident(ref=ref, playbook="outage", title=f"{ref} title",
                                 severity="major"))
        session.commit()
        loud = session.exec(select(Incident).where(Incident.ref == "INC-LOUD")).one()
        assert loud.id is not None
        for i in range(24):
            session.add(Reaction(
                source=ReactionSource.x_mention, source_id=str(i), incident_id=loud.id,
                channel="x", locale="de" if i % 2 else "en", author=f"@u{i}",
                text=HOSTILE if i == 0 else f"reaction {i}",
                sentiment=Sentiment.negative if i < 18 else Sentiment.positive,
                needs_human=i == 0, reasons_json=json.dumps(["complaint: still down"])
                if i == 0 else "[]", received_at=now - timedelta(seconds=5 + i)))
        session.commit()
        detect_spikes(session, loud.id, SpikePolicy(min_volume=10), now=now)


def test_the_page_shows_counts_flagged_reasons_and_spikes_as_text(page_db: Engine) -> None:
    fill(page_db)
    app = open_page(PAGE.name, Role.pr_lead)
    app.query_params["incident"] = "INC-LOUD"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox[0].value == "INC-LOUD"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Reactions": "24", "Need a person": "1", "Negative": "75%",
                       "Spikes": "2"}
    frames = [df.value for df in app.dataframe]
    flagged = next(f for f in frames if "reasons" in f.columns)
    assert list(flagged["text"]) == [HOSTILE]  # a cell of data, not rendered markup
    assert list(flagged["reasons"]) == ["complaint: still down"]
    spikes = next(f for f in frames if "alert" in f.columns)
    assert sorted(spikes["locale"]) == ["de", "en"]
    assert set(spikes["alert"]) == {"alert pending (retried)"}
    shown = " ".join(str(m.value) for m in (*app.markdown, *app.caption))
    assert "<img" not in shown and "not bold" not in shown


def test_the_page_without_reactions_says_so(page_db: Engine) -> None:
    fill(page_db)
    app = open_page(PAGE.name, Role.pr_lead)
    app.run()  # no ?incident=: the newest incident first
    assert not app.exception, [e.value for e in app.exception]
    app.selectbox[0].select("INC-QUIET").run()
    assert [i.value for i in app.info] == ["No reactions to this incident yet."]
    assert app.query_params["incident"] == "INC-QUIET"
