"""Hostile text, property-based: every free-text fact and recipient field of every shipped
playbook, fed control characters, bidi overrides, zero-width characters, quotes, markup,
template and substitution syntax, CJK, emoji, lone surrogates and very long strings.

Each value is either refused where it enters (``build_fact_sheet`` at trigger, the CSV import)
with an error naming the field and nothing written, or it reaches every channel literally: the
text rule's normal form (``core/text.py``: line ends normalised, zero-width stripped) verbatim in
text parts, HTML-escaped in HTML parts, and on the status page (its JSON, HTML and Atom feed)
built in a temporary directory by the real channel. No Prefect: the same render and status page
code the flow runs, in process (``tests/integration/test_cli.py`` does it through the CLI).
"""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from test_template_safety import (
    CASES,
    CLOSE,
    FACT_LIMITS,
    OPEN,
    SHIPPED,
    assert_literal,
    occurrences,
    playbook,
    ready_locales,
    renderer,
    with_fact,
)

from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.status_page import StatusPageChannel
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.errors import FactsError, LimitError
from crisiscomms.core.text import clean_text, text_problem
from crisiscomms.delivery.contract import OutboundBatch, Outcome
from crisiscomms.delivery.sender import _recipients
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.render.environment import substitution_tag, time_tags
from crisiscomms.testing.emulators.sendgrid import apply_substitutions

HOSTILE = (
    "\x1b[31mred\x1b[0m", "\x07", "\x08\x08\x08", "\x00", "\x7f", "\x85", "\x9b", "\x0c",
    "\u202eevil\u202c", "\u2066isolate\u2069", "\u202a", "\u200b", "\ufeff", "\u2060",
    "pay\u200dpal", "\u200c", "\u200e", "\u200f", "\u061c", "\r\n", "\r", "\n", "\t",
    '"', "'", "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "&amp;",
    "%first_name%", "%first_name.html%", "%at|time|garbage|%", "{{ 7*7 }}", "{% raw %}",
    "{#", "障害が発生しました", "お客様各位", "🚨", "👩\u200d💻", "🏳️\u200d🌈", "\ud800", "\udfff",
    "\ufffe", "\U0010ffff", "x" * 300, "长" * 120,
)
_ANY_CHAR = st.characters(blacklist_characters="QZ")  # every code point, surrogates included
_KEPT = [h for h in HOSTILE if text_problem(h) is None]
_KEPT_CHAR = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="QZ")
HOSTILE_TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.one_of(st.sampled_from(HOSTILE), _ANY_CHAR), min_size=1, max_size=8)
    .map("".join),
    st.lists(st.one_of(st.sampled_from(_KEPT), _KEPT_CHAR), min_size=1, max_size=8)
    .map("".join),
)
"""Known hostile strings, any mix of them with arbitrary code points, and mixes of those the
rule keeps (markup, quotes, template syntax, scripts, emoji, zero-width, CRLF, bidi marks)."""


def expected(value: str) -> list[str] | None:
    """What a channel must show between the sentinels: the stored (clean) form; None when the
    rule refuses the value."""
    try:
        return occurrences(clean_text(value))
    except ValueError:
        return None


def refused_fields(error: FactsError) -> set[str]:
    return {str(p.field) for p in error.each()}


def names_the_fact(field: str, path: str) -> bool:
    """``recall.colors`` is named as ``recall.colors.0``; a translation as
    ``translations.<locale>.<path>``."""
    head, _, rest = field.partition(".")
    if head == "translations":
        field = rest.partition(".")[2]
    return field == path or field.startswith(path + ".")


# -- facts --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module (hypothesis runs many examples per test function)."""
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def plain_reader(scratch: Path) -> Engine:
    """A recipients table with one ordinary reader, Ada."""
    engine = make_engine(f"sqlite:///{scratch / 'plain.db'}")
    init_db(engine)
    with Session(engine) as session:
        session.add(Recipient(email="ada@example.com", name="Ada", time_zone="Asia/Kathmandu",
                              product="Gadget", order_ref="ORD-1"))
        session.commit()
    return engine


def status_page_shows(folder: Path, sheet: FactSheet, stage_status: str,
                      message: Any) -> tuple[str, str]:
    """Publish the status page message with the real channel into a fresh ``folder``; the
    site's plain texts (JSON name and bodies, the feed's entry title) and its HTML (the
    incident page, the feed's entry content)."""
    shutil.rmtree(folder, ignore_errors=True)
    channel = StatusPageChannel(folder, page_name="Example Status",
                                page_url="https://status.example.com")
    result = channel.send(OutboundBatch(key="k", batch_no=0, facts=sheet,
                                        incident_status=stage_status, message=message))
    assert result.outcome == Outcome.sent, result.reason
    site = channel.site_path
    documents = json.loads((site / "api" / "v2" / "incidents.json").read_text("utf-8"))
    incident = documents["incidents"][0]
    bodies = [u["body"] for u in incident["incident_updates"]]
    atom = ET.parse(site / "history.atom").getroot()  # well-formed XML, or this raises
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entry = atom.find("a:entry", ns)
    assert entry is not None
    feed_title = entry.findtext("a:title", default="", namespaces=ns)
    feed_html = entry.findtext("a:content", default="", namespaces=ns)
    page = (site / "incidents" / f"{incident['id']}.html").read_text("utf-8")
    return "\n".join([incident["name"], *bodies, feed_title]), feed_html + page


@given(case=st.sampled_from(CASES), payload=HOSTILE_TEXT, data=st.data())
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_a_hostile_fact_is_refused_naming_it_or_reaches_every_channel_literally(
        scratch: Path, plain_reader: Engine, case: tuple[str, str], payload: str,
        data: st.DataObject) -> None:
    name, path = case
    pb = playbook(name)
    value = f"{OPEN}{payload}{CLOSE}"
    limit = FACT_LIMITS.get(path)
    if limit is not None and len(value) > limit:
        value = value[:limit - len(CLOSE)] + CLOSE
    want = expected(value)
    try:
        sheet = build_fact_sheet(with_fact(pb, path, value))
    except FactsError as exc:  # refused at the door: naming the fact, and only it
        assert refused_fields(exc) and all(names_the_fact(f, path) for f in refused_fields(exc)), \
            (path, refused_fields(exc))
        reasons = [p.reason for p in exc.each()]  # the text rule's, or the fact's length
        assert want is None or all(" characters" in r for r in reasons), (path, value, reasons)
        event("fact refused at the door")
        return
    assert want is not None, f"{path} accepted {value!r}"
    literal = want[0]
    assert text_problem(literal) is None and not any(c in "\u200b\u2060\ufeff" for c in literal)
    stage = data.draw(st.sampled_from(pb.stages), label="stage")
    locale = data.draw(st.sampled_from(ready_locales(pb, stage.id)), label="locale")
    for channel in pb.channels_of(stage, CHANNEL_CLASSES):
        try:
            message, _ = renderer().render_message(pb, stage, sheet, channel, locale)
        except LimitError as exc:  # a long fact: refused at trigger, naming channel and part
            assert exc.channel == channel and exc.field and len(literal) > 40, exc
            event("fact too long for a channel")
            return
        parts = dict(message.parts)
        if CHANNEL_CLASSES[channel].personal:
            parts = read_by(pb, parts, locale, plain_reader)
        assert_literal(parts, literal)
        if channel == "status_page":
            plain, html = status_page_shows(scratch / "site", sheet, stage.incident_status,
                                            message)
            shown = assert_literal({"text": plain}, literal)
            shown += assert_literal({"html": html}, literal)
            event(f"status page shows the fact: {bool(shown)}")
    event("fact literal on every channel")


def test_the_property_covers_every_free_text_fact_of_every_playbook() -> None:
    assert {name for name, _ in CASES} == set(SHIPPED)
    paths = {p for _, p in CASES}
    assert {"title", "impact", "cause", "remedy", "workaround", "organization", "components",
            "extra.prevention", "recall.hazard", "recall.colors", "breach.what_happened",
            "breach.data_categories"} <= paths


# -- recipient fields ---------------------------------------------------------------------------

COLUMN = {"first_name": "name", "product": "product", "order_ref": "order_ref"}
"""The recipient column each personal field is filled from."""
RECIPIENT_CASES = [(name, field) for name in SHIPPED
                   for field in playbook(name).recipient_fields if field in COLUMN]


@pytest.fixture(scope="module")
def imported(scratch: Path) -> Engine:
    """The recipients table the hostile CSV files are imported into."""
    engine = make_engine(f"sqlite:///{scratch / 'recipients.db'}")
    init_db(engine)
    return engine


def read_by(pb: Any, parts: Mapping[str, str], locale: str, engine: Engine) -> dict[str, str]:
    """A personal message as the (first) recipient in ``engine`` reads it: substitutions
    built by the publisher from the table, filled as SendGrid fills them."""
    fields = tuple((f, spec.fallback_for(locale, pb.default_locale),
                    substitution_tag(f, html=False), substitution_tag(f, html=True))
                   for f, spec in pb.recipient_fields.items())
    with engine.connect() as conn:
        ids = [i for i in conn.execute(sa_select(col(Recipient.id))).scalars() if i is not None]
        recipients, skipped = _recipients(conn, ids[:1], fields, tags=time_tags(parts),
                                          locale=locale)
    assert skipped == 0 and len(recipients) == 1
    subs = dict(recipients[0].substitutions)
    return {part: apply_substitutions(text, subs) or "" for part, text in parts.items()}


@given(case=st.sampled_from(RECIPIENT_CASES), payload=HOSTILE_TEXT, data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_hostile_recipient_field_is_refused_at_import_or_read_literally(
        scratch: Path, imported: Engine, case: tuple[str, str], payload: str,
        data: st.DataObject) -> None:
    name, field = case
    pb = playbook(name)
    column = COLUMN[field]
    value = f"{OPEN}{payload}{CLOSE}" + (" Surname" if field == "first_name" else "")
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in value))  # not representable in UTF-8
    engine = imported
    with Session(engine) as session:
        session.execute(delete(Recipient))
        session.commit()
    csv_path = scratch / "recipients.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["email", column], ["reader@example.com", value]])
    report = import_csv(engine, csv_path)
    try:
        stored = clean_text(value, single_line=True)
    except ValueError:
        stored = None
    if report.rejected:  # refused: naming the column, nothing written
        assert [r.split(":", 1)[0] for _, r in report.rejected] == [column], report.rejected
        assert stored is None or len(stored) > 64, (value, report.rejected)
        with Session(engine) as session:
            assert session.exec(select(Recipient)).first() is None
        event("recipient field refused at import")
        return
    assert stored is not None, f"{column} accepted {value!r}"
    literal = occurrences(stored)[0]
    assume(field != "first_name" or not any(c.isspace() for c in literal))  # a first name
    stage = data.draw(st.sampled_from([s for s in pb.stages
                                       if "email" in pb.channels_of(s, CHANNEL_CLASSES)]))
    locale = data.draw(st.sampled_from(ready_locales(pb, stage.id)))
    message, _ = renderer().render_message(pb, stage, build_fact_sheet(dict(pb.drill_facts)),
                                           "email", locale)
    read = read_by(pb, message.parts, locale, engine)
    event("recipient field literal in the email")
    if f"%{field}%" in "".join(message.parts.values()):
        assert assert_literal(read, literal) >= 1
    else:
        assert_literal(read, literal)
