"""Recall and breach facts: what a notice must carry is refused when missing, URGENT only where
FDA asks for it, and numbers, prices, dates and times in the reader's language and time zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import FactsError
from crisiscomms.core.settings import Settings
from crisiscomms.incident.facts import BreachFacts, RecallFacts, build_fact_sheet
from crisiscomms.incident.models import Incident
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.playbook.notices import fact_problems, message_problems
from crisiscomms.render.environment import StageRenderer, make_environment, time_tags, time_values

PLAYBOOKS = PROJECT_ROOT / "playbooks"
TEMPLATES = PROJECT_ROOT / "templates"
LOCALES = ("en", "es", "fr", "de", "ja")


def recall_playbook() -> Playbook:
    return load_playbook("product_recall", PLAYBOOKS)


def drill(name: str = "product_recall") -> dict[str, Any]:
    facts = dict(load_playbook(name, PLAYBOOKS).drill_facts)
    for section in ("recall", "breach"):
        if section in facts:
            facts[section] = dict(facts[section])
    return facts


def required(model: type[RecallFacts] | type[BreachFacts]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]


# -- every required field, refused when missing ------------------------------------------------

RECALL_REQUIRED = required(RecallFacts)


def test_recall_requires_what_cpsc_and_fda_name() -> None:
    """16 CFR 1115.27 / 21 CFR 7.49: each of these is a required field of the recall facts."""
    assert set(RECALL_REQUIRED) >= {
        "product_type", "product_name", "product_description", "colors", "photo_url",
        "units_affected", "hazard", "injuries_reported", "incidents_reported", "injuries",
        "manufacturer", "retailers", "country_of_manufacture", "manufactured_from",
        "manufactured_to", "sold_from", "sold_to", "price_min", "price_max", "currency",
        "remedy", "consumer_action", "toll_free_phone", "website", "media_contact_name",
        "media_contact_email", "media_contact_phone"}


@pytest.mark.parametrize("field", RECALL_REQUIRED)
def test_each_missing_recall_field_is_refused_by_name(field: str) -> None:
    facts = drill()
    del facts["recall"][field]
    with pytest.raises(FactsError, match=rf"recall\.{field}: Field required"):
        build_fact_sheet(facts)


@pytest.mark.parametrize("field", [f for f in RECALL_REQUIRED
                                   if RecallFacts.model_fields[f].annotation is str])
def test_an_empty_recall_text_is_refused_by_name(field: str) -> None:
    facts = drill()
    facts["recall"][field] = "   "
    with pytest.raises(FactsError, match=rf"recall\.{field}: "):
        build_fact_sheet(facts)


@pytest.mark.parametrize(("change", "words"), [
    ({"model_numbers": [], "lot_numbers": [], "serial_numbers": []},
     "needs model, lot or serial numbers"),
    ({"colors": []}, r"recall\.colors: .*at least 1"),
    ({"retailers": []}, r"recall\.retailers: .*at least 1"),
    ({"remedy": []}, r"recall\.remedy: .*at least 1"),
    ({"remedy": ["apology"]}, r"recall\.remedy\.0: "),
    ({"units_affected": 0}, r"recall\.units_affected: .*greater than or equal to 1"),
    ({"product_type": "food"}, "a food recall needs its FDA recall_class"),
    ({"product_type": "drug", "recall_class": "IV"}, r"recall\.recall_class: "),
    ({"website": "www.example.com"}, r"recall\.website: .*http\(s\) URL"),
    ({"photo_url": "photo.jpg"}, r"recall\.photo_url: .*http\(s\) URL"),
    ({"country_of_manufacture": "China"}, r"recall\.country_of_manufacture: "),
    ({"currency": "dollars"}, r"recall\.currency: "),
    ({"sold_from": "2026-12-01"}, "sold_from is after sold_to"),
    ({"manufactured_from": "2026-12-01"}, "manufactured_from is after manufactured_to"),
    ({"price_min": "99.00"}, "price_min is over price_max"),
    ({"toll_free_phone": "911"}, r"recall\.toll_free_phone: "),
    ({"media_contact_email": "press at example"}, r"recall\.media_contact_email: "),
])
def test_bad_recall_facts_are_refused_with_a_clear_message(change: dict[str, Any],
                                                          words: str) -> None:
    facts = drill()
    facts["recall"].update(change)
    with pytest.raises(FactsError, match=words):
        build_fact_sheet(facts)


def test_a_recall_notice_needs_its_section_and_the_word_recall_in_every_language() -> None:
    pb = recall_playbook()
    facts = drill()
    del facts["recall"]
    problems = [str(p) for p in fact_problems(pb, pb.stages[0], build_fact_sheet(facts))]
    assert any("recall" in p and "needs the recall facts" in p for p in problems), problems
    facts = drill()
    facts["title"] = "Important notice: KettlePro"
    facts["translations"] = {**facts["translations"],
                             "de": {**facts["translations"]["de"], "title": "Wichtig: Kettle"}}
    faults = fact_problems(pb, pb.stages[0], build_fact_sheet(facts))
    assert {(f.locale, f.field) for f in faults} >= {("en", "title"), ("de", "title")}
    problems = [str(p) for p in faults]
    assert any("locale en, field title: the headline must say 'Recall'" in p for p in problems)
    assert any("locale de, field title: the headline must say 'Rückruf'" in p for p in problems)
    assert not any("locale es, field title" in p for p in problems)


def test_an_untranslated_recall_text_is_refused_per_locale() -> None:
    pb = recall_playbook()
    facts = drill()
    facts["translations"] = {loc: {k: v for k, v in entries.items() if k != "recall.hazard"}
                             if loc == "ja" else entries
                             for loc, entries in facts["translations"].items()}
    problems = fact_problems(pb, pb.stages[0], build_fact_sheet(facts))
    assert [str(p) for p in problems] == [
        "locale ja, field recall.hazard: no translation (facts.translations.ja)"]
    assert problems[0].fields() == {"locale": "ja", "field": "recall.hazard"}


def test_trigger_refuses_a_recall_missing_a_field_and_stores_nothing(
        engine: Engine, settings: Settings) -> None:
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger

    facts = drill()
    del facts["recall"]["toll_free_phone"]
    with pytest.raises(FactsError, match=r"recall\.toll_free_phone: Field required"):
        trigger(engine, settings, CHANNEL_CLASSES, playbook_name="product_recall", facts=facts,
                actor=system_identity("test"))
    with Session(engine) as session:
        assert session.exec(select(Incident)).first() is None


BREACH_REQUIRED = required(BreachFacts)


def test_breach_requires_what_gdpr_article_34_names() -> None:
    assert set(BREACH_REQUIRED) >= {
        "occurred_from", "discovered_at", "what_happened", "data_categories",
        "people_affected", "actions_taken", "recommended_actions", "likely_consequences",
        "dpo_contact"}


@pytest.mark.parametrize("field", BREACH_REQUIRED)
def test_each_missing_breach_field_is_refused_by_name(field: str) -> None:
    facts = drill("data_incident")
    del facts["breach"][field]
    with pytest.raises(FactsError, match=rf"breach\.{field}: Field required"):
        build_fact_sheet(facts)


def test_breach_times_need_an_offset() -> None:
    facts = drill("data_incident")
    facts["breach"]["discovered_at"] = "2026-11-23T09:40:00"
    with pytest.raises(FactsError, match=r"breach\.discovered_at: .*time zone offset"):
        build_fact_sheet(facts)


# -- URGENT in the email subject: class I/II food and drug recalls, and nothing else -----------

KINDS = [("food", "I", True), ("food", "II", True), ("drug", "I", True), ("drug", "II", True),
         ("food", "III", False), ("drug", "III", False), ("medical_device", "I", False),
         ("cosmetic", "II", False), ("consumer_product", None, False)]


@pytest.mark.parametrize(("product_type", "recall_class", "urgent"), KINDS)
def test_urgent_in_the_email_subject_only_for_class_i_and_ii_food_and_drugs(
        product_type: str, recall_class: str | None, urgent: bool) -> None:
    pb = recall_playbook()
    assert pb.notice is not None
    facts = drill()
    facts["recall"].update(product_type=product_type, recall_class=recall_class)
    sheet = build_fact_sheet(facts)
    assert sheet.recall is not None and sheet.recall.urgent is urgent
    renderer = StageRenderer(TEMPLATES, CHANNEL_CLASSES)
    for locale in LOCALES:
        message, _ = renderer.render_message(pb, pb.stages[0], sheet, "email", locale)
        subject = message.parts["subject"]
        word = pb.notice.urgent[locale]
        assert (word in subject) is urgent, (locale, subject)
        assert pb.notice.headline[locale].casefold() in subject.casefold()


def test_a_subject_without_urgent_is_a_problem_for_an_urgent_recall() -> None:
    pb = recall_playbook()
    facts = drill()
    facts["recall"].update(product_type="food", recall_class="I")
    sheet = build_fact_sheet(facts)
    problems = message_problems(pb, sheet, "email", "de",
                                {"subject": "Rückruf: KettlePro", "text": "", "html": ""})
    assert "field subject: a class I food recall must say 'DRINGEND'" in map(str, problems)
    assert ("subject", "a class I food recall must say 'DRINGEND'") in [
        (p.field, p.reason) for p in problems]


# -- Babel: numbers, money, dates, countries, lists in five locales; per-recipient zones --------

NNBSP, NBSP = "\u202f", "\xa0"
EXPECTED = {
    # locale: (number, USD price, EUR price, calendar date, country, list)
    "en": ("48,200", "$39.99", "€39.99", "March 1, 2026", "China", "a, b, and c"),
    "es": ("48.200", f"39,99{NBSP}US$", f"39,99{NBSP}€", "1 de marzo de 2026", "China",
           "a, b y c"),
    "fr": (f"48{NNBSP}200", f"39,99{NBSP}$US", f"39,99{NBSP}€", "1 mars 2026", "Chine",
           "a, b et c"),
    "de": ("48.200", f"39,99{NBSP}$", f"39,99{NBSP}€", "1. März 2026", "China", "a, b und c"),
    "ja": ("48,200", "$39.99", "€39.99", "2026年3月1日", "中国", "a、b、c"),
}


@pytest.mark.parametrize("locale", LOCALES)
def test_babel_filters_in_five_locales(locale: str) -> None:
    env = make_environment(TEMPLATES)
    template = env.from_string(
        "{{ n | number }}|{{ p | money('USD') }}|{{ p | money('EUR') }}|{{ d | date }}|"
        "{{ c | country }}|{{ items | join_and }}")
    out = template.render(n=48200, p=Decimal("39.99"), d=date(2026, 3, 1), c="CN",
                          items=["a", "b", "c"], locale=locale)
    assert tuple(out.split("|")) == EXPECTED[locale]


WHEN = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "expected"), [
    ("Europe/Berlin", "15:00 CET"), ("Europe/Madrid", "15:00 CET"),
    ("America/New_York", "09:00 EST"), ("America/Mexico_City", "08:00 CST"),
    ("Asia/Tokyo", "23:00 JST"), ("Europe/London", "14:00 GMT"),
    ("Asia/Kathmandu", "19:45 +0545"), ("Not/AZone", "14:00 UTC"),
])
def test_personal_times_in_each_recipients_zone(zone: str, expected: str) -> None:
    env = make_environment(TEMPLATES)
    text = env.from_string("Next update at {{ w | time }}").render(
        w=WHEN, locale="en", personal_times=True)
    tags = time_tags({"text": text})
    assert text == f"Next update at {tags[0]}"  # one approved text, filled per recipient
    assert time_values(tags, "en", zone) == {tags[0]: expected}


@pytest.mark.parametrize("locale", LOCALES)
def test_personal_dates_in_the_message_locale_and_recipient_zone(locale: str) -> None:
    env = make_environment(TEMPLATES)
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # already the 24th in Tokyo
    text = env.from_string("{{ w | date }}").render(w=late, locale=locale, personal_times=True)
    tags = time_tags({"text": text})
    tokyo = time_values(tags, locale, "Asia/Tokyo")[tags[0]]
    new_york = time_values(tags, locale, "America/New_York")[tags[0]]
    assert "24" in tokyo and "23" in new_york and tokyo != new_york


def test_public_channels_use_the_playbooks_zone_for_the_locale() -> None:
    """The status page and X are not personal: times there use the playbook's zone of the
    locale (product_recall: es → Europe/Madrid, ja → Asia/Tokyo)."""
    pb = load_playbook("data_incident", PLAYBOOKS)
    facts = drill("data_incident")
    facts["next_update_at"] = WHEN.isoformat()
    sheet = build_fact_sheet(facts)
    renderer = StageRenderer(TEMPLATES, CHANNEL_CLASSES)
    stage = pb.stages[0]
    for locale, local in (("es", "15:00 CET"), ("ja", "23:00 JST"), ("en", "09:00 EST")):
        assert pb.time_zones[locale]
        message, _ = renderer.render_message(pb, stage, sheet, "status_page", locale)
        assert local in message.parts["text"], (locale, message.parts["text"])
        email, _ = renderer.render_message(pb, stage, sheet, "email", locale)
        assert local not in email.parts["text"]  # personal: a tag, filled per recipient
        assert "%at|time|" in email.parts["text"]
