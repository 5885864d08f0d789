"""The ``phone`` column of a recipient import: validated with ``phonenumbers`` and stored in
E.164; a bad number rejects its line, naming it, and (by default) imports nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.audience.import_rows import e164
from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient


def _csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "phones.csv"
    path.write_text("email,phone,time_zone\n" + "".join(f"{line}\n" for line in lines),
                    encoding="utf-8")
    return path


def _phones(engine: Engine) -> dict[str, str | None]:
    with Session(engine) as s:
        return {r.email: r.phone for r in s.exec(select(Recipient)).all()}


@pytest.mark.parametrize(("given", "stored"), [
    ("+1 415 555 2671", "+14155552671"),
    ("+44 7911 123456", "+447911123456"),
    ("0049 151 23456789", "+4915123456789"),
    ("+81 90-1234-5678", "+819012345678"),
    ("+33 (0)6 12 34 56 78", "+33612345678"),
])
def test_international_numbers_are_stored_in_e164(given: str, stored: str) -> None:
    assert e164(given) == stored


@pytest.mark.parametrize(("given", "reason"), [
    ("415 555 2671", "not in international form"),
    ("+1 415", "not a valid number"),
    ("+999 123456789", "not a phone number"),
    ("call me", "not in international form"),
    ("+44 20 7946 0958", "is a landline"),
])
def test_bad_numbers_are_refused_with_the_reason(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        e164(given)


def test_a_bad_phone_rejects_its_line_and_imports_nothing(engine: Engine,
                                                          tmp_path: Path) -> None:
    report = import_csv(engine, _csv(tmp_path, "a@x.com,+14155552671,America/Los_Angeles",
                                     "b@x.com,555-0100,UTC", "c@x.com,,UTC"))
    assert report.rejected == [
        (3, "phone '555-0100' is not in international form (+ and country code)")]
    assert not report.written and _phones(engine) == {}


def test_valid_phones_are_imported_and_a_missing_one_is_no_sms(engine: Engine,
                                                               tmp_path: Path) -> None:
    report = import_csv(engine, _csv(tmp_path, "a@x.com,+1 (415) 555-2671,America/Los_Angeles",
                                     "c@x.com,,UTC"))
    assert report.written and report.imported == 2 and not report.rejected
    assert _phones(engine) == {"a@x.com": "+14155552671", "c@x.com": None}


def _reference_e164(candidate: str) -> str:
    """The rule as first written: is_valid_number, then number_type (two region look-ups)."""
    import phonenumbers

    number = phonenumbers.parse(candidate, None)
    if not phonenumbers.is_valid_number(number):
        return "invalid"
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE:
        return "landline"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _outcome(candidate: str) -> str:
    try:
        return e164(candidate)
    except ValueError as exc:
        return ("invalid" if "not a valid number" in str(exc) else
                "landline" if "landline" in str(exc) else str(exc))


def test_one_number_type_call_decides_as_validity_then_type_did() -> None:
    """Every region's example numbers of every type, and each with a digit dropped, added or
    changed (mostly invalid): the single ``number_type`` call gives the old answer."""
    import phonenumbers

    numbers: set[str] = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            numbers.update({digits, digits[:-1], digits + "5", digits[:-1] + "9",
                            digits[:4] + "0" + digits[5:]})
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.add(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    assert len(numbers) > 2_000
    kinds = {_outcome(n) for n in numbers}
    assert {"invalid", "landline"} <= kinds and len(kinds) > 100  # all three outcomes seen
    for number in sorted(numbers):
        assert _outcome(number) == _reference_e164(number), number
