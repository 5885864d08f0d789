"""The text rule (``core/text.py``) as facts, facts files and URL facts apply it: control
characters and bidi overrides refused naming the fact, zero-width characters stripped, URLs
parsed, JSON facts files read as JSON."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_paths import PROJECT_ROOT

from crisiscomms.core.errors import FactsError
from crisiscomms.core.text import check_url, clean_text, scrub, text_problem
from crisiscomms.incident.facts import BreachFacts, FactSheet, RecallFacts, build_fact_sheet
from crisiscomms.testing.drill import load_facts_file

PLAYBOOKS = PROJECT_ROOT / "playbooks"


@cache
def _drill_facts(name: str) -> str:
    return json.dumps(yaml.safe_load((PLAYBOOKS / f"{name}.yaml").read_text())["drill_facts"])


def drill_facts(name: str) -> dict[str, Any]:
    """A fresh copy of a shipped playbook's drill facts."""
    return dict(json.loads(_drill_facts(name)))


# -- the rule ------------------------------------------------------------------------------------

REFUSED = [
    ("\x1b", "U+001B (ESC)"),
    ("\x07", "U+0007 (BEL)"),
    ("\x08", "U+0008 (BS)"),
    ("\x00", "U+0000 (NUL)"),
    ("\x0b", "U+000B (VT)"),
    ("\x7f", "U+007F (DEL)"),
    ("\x85", "U+0085"),
    ("\x9b", "U+009B"),
    ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("\u202a", "U+202A (LEFT-TO-RIGHT EMBEDDING)"),
    ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("\u2069", "U+2069 (POP DIRECTIONAL ISOLATE)"),
    ("\ud800", "U+D800 (lone surrogate)"),
    ("\udfff", "U+DFFF (lone surrogate)"),
    ("\ufffe", "U+FFFE (noncharacter)"),
    ("\ufdd0", "U+FDD0 (noncharacter)"),
    ("\U0010ffff", "U+10FFFF (noncharacter)"),
]


@pytest.mark.parametrize(("char", "named"), REFUSED)
def test_controls_bidi_overrides_surrogates_and_noncharacters_are_refused(
        char: str, named: str) -> None:
    with pytest.raises(ValueError, match=r"at character 4") as info:
        clean_text(f"abc{char}def")
    assert named in str(info.value)
    assert text_problem(f"abc{char}") is not None
    assert scrub(f"a{char}b") == "ab"


@pytest.mark.parametrize(("raw", "stored"), [
    ("line one\nline two\tend", "line one\nline two\tend"),       # newline and tab kept
    ("windows\r\nline\rold mac", "windows\nline\nold mac"),       # line ends normalised
    ("pay\u200bpal \ufeffok\u2060", "paypal ok"),                 # zero-width stripped
    ("pay\u200dpal and a\u200cb", "paypal and ab"),               # no joiner inside ASCII
    ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # an emoji sequence stays
    ("\u0928\u094d\u200d\u0915", "\u0928\u094d\u200d\u0915"),      # Devanagari half form
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627"
     "\u0647\u0645"),                                            # Persian ZWNJ
    ("\u05e9\u05dc\u05d5\u05dd\u200f!", "\u05e9\u05dc\u05d5\u05dd\u200f!"),  # RLM is spelling
    ("障害が発生しました 🚨 <script> {{ x }} %first_name%",
     "障害が発生しました 🚨 <script> {{ x }} %first_name%"),    # everything else is literal
])
def test_what_is_kept_normalised_and_stripped(raw: str, stored: str) -> None:
    assert clean_text(raw) == stored


def test_single_line_fields_refuse_line_breaks_and_tabs() -> None:
    for raw in ("Ada\nBcc: x", "Ada\tL", "Ada\r", "Ada\u2028x"):
        with pytest.raises(ValueError, match="one line"):
            clean_text(raw, single_line=True)
    assert clean_text("Ada \u200bLovelace", single_line=True) == "Ada Lovelace"


# -- URL facts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://www.example.com/support/contact", "http://127.0.0.1:8030/incidents/a",
    "https://status.example.com/incidents/drill-outage-001?lang=es#latest",
    "https://例え.jp/お問い合わせ", "https://example.com/a%20b%22c", "HTTPS://EXAMPLE.COM/",
])
def test_good_urls_pass(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ('https://example.com/"><script>', "without quotes"),
    ("https://example.com/'onmouseover", "without quotes"),
    ("https://example.com/<x>", "without quotes, brackets"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com\\@evil.example/", "backslashes"),
    ("https://[::1]/", "brackets"),
    ("https://bank.example@evil.example/", "user name"),
    ("javascript:alert(1)", "http(s) URL"),
    ("ftp://example.com/", "http(s) URL"),
    ("https:/example.com", "http(s) URL"),
    ("https:///path", "host name"),
    ("https://-bad-.example/", "host name"),
    ("https://example.com:99999/", "URL"),
    ("https://ex\u200bample.com/", "invisible"),
    ("https://example.com/\x1b[31m", "U+001B"),
    ("https://example.com/" + "a" * 2048, "at most 2048"),
])
def test_bad_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(ValueError, match="must be") as info:
        check_url(url)
    assert why in str(info.value)


# -- facts ---------------------------------------------------------------------------------------

def refusal(build: Any) -> FactsError:
    with pytest.raises(FactsError) as info:
        build()
    return info.value


@pytest.mark.parametrize(("playbook", "path", "value"), [
    ("outage", "title", "API down \x1b[31mNOW\x1b[0m"),
    ("outage", "impact", "Some requests fail\x07"),
    ("outage", "cause", "a\bb"),
    ("outage", "extra.prevention", "\u202eevil"),
    ("outage", "translations.es.impact", "Algunas peticiones fallan\x1b"),
    ("outage", "organization", "Example\u2066 Corp"),
    ("outage", "components.1", "Dash\x00board"),
    ("product_recall", "recall.hazard", "burn\x1bhazard"),
    ("product_recall", "recall.colors.0", "red\x07"),
    ("product_recall", "recall.media_contact_name", "Dana\x85"),
    ("product_recall", "translations.es.recall.hazard", "quemadura\u202d"),
    ("data_incident", "breach.what_happened", "we\x1b[2J were breached"),
    ("data_incident", "breach.data_categories.0", "emails\ud800"),
])
def test_a_refused_character_in_any_fact_names_the_fact(playbook: str, path: str,
                                                        value: str) -> None:
    facts = drill_facts(playbook)
    target, keys = facts, path.split(".")
    if keys[0] == "translations":  # translations.<locale>.<fact path>
        target, keys = facts["translations"][keys[1]], [".".join(keys[2:])]
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    error = refusal(lambda: build_fact_sheet(facts))
    assert [p.field for p in error.each()] == [path]
    assert error.field == path and path in str(error)
    assert "U+" in str(error)
    assert "U+" in refusal(lambda: FactSheet.model_validate(facts)).reason  # the model itself


def test_every_problem_is_reported_in_one_pass() -> None:
    facts = {**drill_facts("outage"), "title": "bad\x1b", "contact_url": "https://x.com/\"",
             "severity": "apocalyptic"}
    fields = sorted(str(p.field) for p in refusal(lambda: build_fact_sheet(facts)).each())
    assert fields == ["contact_url", "severity", "title"]


def test_zero_width_characters_are_stripped_and_line_ends_normalised() -> None:
    facts = {**drill_facts("outage"), "title": "\u200bAPI\u200b down\ufeff",
             "impact": "line one\r\nline two", "extra": {"prevention": "pay\u200dpal"}}
    sheet = build_fact_sheet(facts)
    assert (sheet.title, sheet.impact, sheet.extra) == (
        "API down", "line one\nline two", {"prevention": "paypal"})


@pytest.mark.parametrize(("playbook", "path", "value"), [
    ("outage", "contact_url", 'https://example.com/"><script>'),
    ("outage", "status_page_url", "https://status.example.com/incidents/a b"),
    ("product_recall", "recall.photo_url", "https://example.com/<img>"),
    ("product_recall", "recall.website", "javascript:alert(1)"),
])
def test_every_url_fact_is_parsed(playbook: str, path: str, value: str) -> None:
    facts = drill_facts(playbook)
    head, _, rest = path.partition(".")
    (facts[head] if rest else facts)[rest or head] = value
    error = refusal(lambda: build_fact_sheet(facts))
    assert error.field == path and "must be" in str(error)


def test_nested_models_apply_the_rule_on_their_own() -> None:
    recall = drill_facts("product_recall")["recall"]
    assert refusal(lambda: RecallFacts.model_validate(
        {**recall, "hazard": "x\x1b"})).field == "hazard"
    breach = drill_facts("data_incident")["breach"]
    assert refusal(lambda: BreachFacts.model_validate(
        {**breach, "dpo_contact": "dpo\x07@example.com"})).field == "dpo_contact"


# -- facts files ---------------------------------------------------------------------------------

def test_a_json_facts_file_is_read_as_json(tmp_path: Path) -> None:
    """Valid JSON YAML misreads: indented with tabs (``jq --tab``), and an emoji written as a
    surrogate-pair escape (YAML decodes each half alone)."""
    text = ('{\n\t"title": "API down \\ud83d\\udea8",\n'
            '\t"contact_url": "https:\\/\\/www.example.com\\/support"\n}')
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    assert yaml.safe_load(text.replace("\t", " "))["title"] == "API down \ud83d\udea8"
    path = tmp_path / "facts.json"
    path.write_text(text, encoding="utf-8")
    assert load_facts_file(path) == {"title": "API down \U0001f6a8",
                                     "contact_url": "https://www.example.com/support"}


def test_yaml_files_still_load(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml", ".YAML"):
        path = tmp_path / f"facts{suffix}"
        path.write_text("title: API down\nseverity: major\n", encoding="utf-8")
        assert load_facts_file(path) == {"title": "API down", "severity": "major"}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("facts.json", '{"title": "a",\n "severity": }', "is not valid JSON: Expecting value at "
                                                     "line 2, column 14"),
    ("facts.yaml", "title: [unclosed\nseverity: major\n", "is not valid YAML: "),
    ("facts.txt", "title: a", "unknown kind '.txt'; name it .json, .yaml or .yml"),
    ("facts", "title: a", "unknown kind '(no extension)'"),
    ("facts.json", "[1, 2]", "must hold a mapping"),
])
def test_facts_file_errors_name_the_file_and_position(tmp_path: Path, name: str, text: str,
                                                      message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    error = refusal(lambda: load_facts_file(path))
    assert str(path) in str(error) and message in str(error)
    assert error.field == "facts"


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "facts.yml"
    path.write_text("title: a\nimpact: \"unclosed\n", encoding="utf-8")
    assert "at line 3, column 1" in str(refusal(lambda: load_facts_file(path)))


def test_a_key_holding_a_control_character_is_named_escaped_never_printed_raw() -> None:
    facts = {**drill_facts("outage"), "extra": {"\x1b[2Jprevention": "x"}}
    error = refusal(lambda: build_fact_sheet(facts))
    assert error.field == "extra.\\x1b[2Jprevention" and "\x1b" not in str(error)
