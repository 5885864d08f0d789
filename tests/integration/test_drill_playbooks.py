"""Drills of the recall and data incident playbooks, end to end: ``crisiscomms drill PLAYBOOK
--recipients 300 --json --out DIR`` through the real flow (Prefect test server), ledger,
channels and emulators; then what the emulators received (``sent.jsonl``) is read back.

Each subscriber gets exactly one email per stage, in the language its locale resolves to
(es-MX → es, fr-CA → fr, ...; the ledger's resolved locale is recorded on each delivery and
checked against the subscriber's own tag), carrying every fact the notice must carry, as the
drill facts say it in that language (numbers formatted for the locale). The recall's press
release is kept in ``--out/press_release`` with its media contact. Nothing failed, nothing
twice.

Templates may be reworded at any time: these tests check facts and structure, not wording.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import format_decimal
from repo_paths import PROJECT_ROOT
from typer.testing import CliRunner

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.cli import app
from crisiscomms.core.locales import fallback_chain, resolve_locale
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.testing.audiences import DRILL_DOMAIN, DRILL_PRESS_DOMAIN, drill_recipients

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
runner = CliRunner()
RECIPIENTS = 300

CARRY = {
    # the facts each consumer email must carry (beyond the playbook's own must_carry)
    "product_recall": ["incident_ref", "recall.product_name", "recall.hazard",
                       "recall.consumer_action", "recall.toll_free_phone", "recall.website",
                       "recall.units_affected", "recall.model_numbers"],
    "data_incident": ["incident_ref", "breach.what_happened", "breach.data_categories",
                      "breach.actions_taken", "breach.recommended_actions",
                      "breach.dpo_contact", "contact_url"],
}


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    return tmp_path


def run(playbook: str, out: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["drill", playbook, "--recipients", str(RECIPIENTS), "--json",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def localized(pb: Playbook, path: str, locale: str, incident_ref: str) -> Any:
    """The drill fact as the message in ``locale`` says it (its translation, else the
    default language's)."""
    if path == "incident_ref":
        return incident_ref
    translations = pb.drill_facts.get("translations", {})
    for loc in fallback_chain(locale, pb.default_locale):
        if path in translations.get(loc, {}):
            return translations[loc][path]
    value: Any = pb.drill_facts
    for key in path.split("."):
        value = value[key]
    return value


def texts(value: Any, locale: str) -> list[str]:
    if isinstance(value, list | tuple):
        return [t for v in value for t in texts(v, locale)]
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [norm(format_decimal(value, locale=locale.replace("-", "_")))]
    return [norm(str(value))]


def norm(text: str) -> str:
    """Runs of whitespace (Babel's narrow no-break spaces included) as one space."""
    return " ".join(text.split())


def subscriber_locales(pb: Playbook) -> dict[str, str]:
    """Each drill subscriber's own locale tag (es-MX...), as the drill audience makes them."""
    return {str(r["email"]): str(r["locale"]) for r in drill_recipients(
        RECIPIENTS, locales=pb.locales, spread_time_zones=True)}


def check_drill(name: str, out: Path) -> tuple[Playbook, dict[str, Any], list[dict[str, Any]]]:
    pb = load_playbook(name, PROJECT_ROOT / "playbooks")
    report = run(name, out)
    ref = report["incident_id"]
    assert report["playbook"] == name and report["recipients"] == RECIPIENTS
    assert report["duplicates"] == 0
    for channel, counts in report["channels"].items():
        assert counts["failed"] == 0, (channel, counts)
        assert counts["sent"] == counts["planned"] > 0, (channel, counts)
    email_stages = [s.id for s in pb.stages if "email" in pb.channels_of(s, CHANNEL_CLASSES)]
    assert report["channels"]["email"]["sent"] == RECIPIENTS * len(email_stages)

    records = [json.loads(line) for line in
               (out / "sent.jsonl").read_text(encoding="utf-8").splitlines()]
    emails = [r for r in records if r["channel"] == "email"
              and str(r["to"]).endswith("@" + DRILL_DOMAIN)]
    tags = subscriber_locales(pb)
    # exactly one email per stage for every subscriber, no stranger
    per_recipient = Counter(r["to"] for r in emails)
    assert set(per_recipient) == set(tags)
    assert set(per_recipient.values()) == {len(email_stages)}
    assert len({(r["to"], r["key"]) for r in emails}) == len(emails)
    # SMS: one per stage to every subscriber's number, in their language, each confirmed by
    # Twilio's signed status callbacks in the ledger
    sms_stages = [s.id for s in pb.stages if "sms" in pb.channels_of(s, CHANNEL_CLASSES)]
    assert sms_stages
    sent_sms = RECIPIENTS * len(sms_stages)
    assert report["channels"]["sms"]["sent"] == sent_sms
    assert report["sms_status"] == {"sent": sent_sms, "delivered": sent_sms}
    texts_sms = [r for r in records if r["channel"] == "sms"]
    assert len(texts_sms) == len({(r["to"], r["body"]) for r in texts_sms}) == sent_sms
    assert {r["locale"] for r in texts_sms} == set(pb.locales)

    carry = list(dict.fromkeys([*CARRY[name], *pb.must_carry.get("email", ())]))
    seen_locales: Counter[str] = Counter()
    regional = 0
    for record in emails:
        tag = tags[record["to"]]
        locale = resolve_locale(tag, pb.locales, pb.default_locale)
        assert record["locale"] == locale, (record["to"], tag, record["locale"])
        seen_locales[locale] += 1
        regional += tag != locale
        text, html = norm(record["text"]), norm(unescape(record["html"]))
        subject = record["subject"]
        assert "%" not in subject + text + html or "%" in json.dumps(pb.drill_facts), record
        if pb.notice is not None and pb.notice.headline:
            assert pb.notice.headline[locale].casefold() in subject.casefold(), subject
        for path in carry:
            for value in texts(localized(pb, path, locale, ref), locale):
                assert value in text, (record["to"], locale, path, value)
                assert value in html, (record["to"], locale, path, value)
        assert ref in subject or ref in text
    assert set(seen_locales) == set(pb.locales)  # all five languages were exercised
    assert regional > 0  # and regional tags (es-MX → es) resolved through the fallback
    return pb, report, records


def test_product_recall_drill(cli_env: Path) -> None:
    out = cli_env / "recall-out"
    pb, report, records = check_drill("product_recall", out)
    ref = report["incident_id"]
    recall = pb.drill_facts["recall"]
    # the press release: kept per locale, HTML and text, with the media contact
    folder = out / "press_release"
    for locale in pb.locales:
        html = norm(unescape((folder / f"announce.{locale}.html").read_text(encoding="utf-8")))
        text = norm((folder / f"announce.{locale}.txt").read_text(encoding="utf-8"))
        assert text.startswith("To: press") and " Subject: " in text  # one copy as sent
        assert "%" not in re.sub(r"\d+(?:[.,]\d+)? ?%", "", html + text), \
            "a personal or time tag was left unfilled"
        for body in (html, text):
            for key in ("media_contact_name", "media_contact_email", "media_contact_phone",
                        "product_name", "toll_free_phone", "website"):
                assert str(recall[key]) in body, (locale, key)
            assert ref in body
    # ... and it reached the press list, once per journalist
    press = [r for r in records if str(r.get("to", "")).endswith("@" + DRILL_PRESS_DOMAIN)]
    assert press and len({r["to"] for r in press}) == len(press)
    assert all(recall["media_contact_email"] in norm(r["text"]) for r in press)
    assert report["channels"]["press"]["sent"] == len(press)
    # the X thread and the recall page carry the reference too
    posts = [r for r in records if r["channel"] == "x"]
    assert len(posts) >= len(pb.locales)
    assert ref in json.dumps(posts, ensure_ascii=False)
    assert (out / "status_page" / "index.html").is_file()


def test_data_incident_drill(cli_env: Path) -> None:
    out = cli_env / "breach-out"
    pb, _, _ = check_drill("data_incident", out)
    assert pb.notice is not None and pb.notice.kind == "breach"
    assert not (out / "press_release").exists()  # no press release in this playbook
    assert (out / "status_page" / "index.html").is_file()
    support = list((out / "support").rglob("*"))
    assert any(p.is_file() for p in support)
