"""Recipient import from CSV: every line validated before anything is written.

Columns (header row, any order): ``email`` (required), and any of ``name``, ``locale``,
``time_zone``, ``phone`` (a mobile number in international form, validated with
``phonenumbers`` and stored in E.164: the SMS channel's address), ``plan``, ``consent``
(true/false, yes/no, 1/0), ``unsubscribed`` /
``suppressed`` (true means no consent), plus any other column the ``Recipient`` table has.
An address is checked with ``email-validator`` (syntax only, no DNS: an import must not depend
on the network), normalised and stored lower-cased, the whole address, as status page
subscriptions store it (``Bob@X.com`` and ``bob@x.com`` are one recipient); a duplicate (in the
file or already in the database, both compared lower-cased) is rejected with the line it
repeats. Every other text column (name, product, order reference...) is one line under the
text rule of :mod:`crisiscomms.core.text`: a control character, a line break or a bidi override
rejects the line naming the column; zero-width characters are stripped. Stored addresses are
lower-case (the migration ``recipient emails lower-cased`` folded
older ones), so the database check is an exact match on the unique index.
Unsubscribed/suppressed recipients are imported with ``consent = false``: they are counted,
and the planner never gives them to a provider.

By default a file with any rejected line imports nothing (bad input changes nothing) and the
report lists every (line, reason); ``skip_invalid`` imports the valid lines and reports the rest.
The file is read twice (validate, then insert in chunks), so memory holds the addresses seen,
not the rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.text import clean_text

TRUE = frozenset({"1", "true", "yes", "y", "t"})
FALSE = frozenset({"0", "false", "no", "n", "f", ""})
_BUILTIN = ("email", "name", "locale", "time_zone", "plan", "consent", "phone",
            "sms_opted_out_at")
_LOOKUP_CHUNK = 500


class RecipientImportError(CrisisCommsError):
    """The file cannot be imported at all (unreadable, no email column)."""


@dataclass
class ImportReport:
    lines: int = 0
    imported: int = 0
    suppressed: int = 0
    """Imported without consent (unsubscribed / suppressed): never sent to."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """(line number in the file, reason)."""
    written: bool = False


def _flag(value: str | None, line: int, column: str) -> bool:
    text = (value or "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{column} must be true or false, got {value!r}")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise RecipientImportError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "email" not in fields:
                raise RecipientImportError(f"{path}: the header row has no 'email' column",
                                           field="email")
            reader.fieldnames = fields
            for row in reader:
                yield reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}
        except (UnicodeDecodeError, csv.Error) as exc:
            what = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise RecipientImportError(f"{path}: {what} after line {reader.line_num}; "
                                       "nothing imported") from None


def _text(raw: dict[str, str], column: str) -> str | None:
    """A personal field (name, product, order reference...) as stored: one line of text under
    the text rule (:mod:`crisiscomms.core.text`: no control characters, line breaks or bidi
    overrides; zero-width characters stripped), ValueError naming the column otherwise (lengths are
    checked with every other column's)."""
    try:
        value = clean_text(raw.get(column, "").strip(" \t\r\n"), single_line=True).strip()
    except ValueError as exc:
        raise ValueError(f"{column}: {exc}") from None
    return value or None


def _validated(line: int, raw: dict[str, str], columns: set[str]) -> dict[str, object]:
    """One row as Recipient values; ValueError naming what is wrong."""
    address = raw.get("email", "").strip()
    if not address:
        raise ValueError("email is empty")
    try:
        email = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email {address!r}: {exc}") from None
    consent = _flag(raw["consent"], line, "consent") if raw.get("consent", "").strip() else True
    for column in ("unsubscribed", "suppressed"):
        if raw.get(column, "").strip() and _flag(raw[column], line, column):
            consent = False
    locale = raw.get("locale", "").strip() or "en"
    if len(locale) > 16 or not locale.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"locale {locale!r} is not a language tag")
    zone = raw.get("time_zone", "").strip() or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None
    values: dict[str, object] = {"email": email, "locale": locale, "time_zone": zone,
                                 "consent": consent, "name": _text(raw, "name"),
                                 "plan": _text(raw, "plan")}
    if raw.get("phone", "").strip():
        values["phone"] = e164(raw["phone"])
    for column in columns:
        if column not in _BUILTIN and raw.get(column, "").strip():
            values[column] = _text(raw, column)
    for column, value in values.items():
        limit = _max_length(column)
        if isinstance(value, str) and limit is not None and len(value) > limit:
            raise ValueError(f"{column}: {len(value):,} characters, over the {limit} a "
                             "recipient's may have")
    return values


def e164(text: str) -> str:
    """A mobile number in E.164 (``+14155550100``), from international notation (``+`` or
    ``00`` and the country code; spaces, dots, dashes and brackets allowed); ValueError naming
    what is wrong: not a number, not a valid one for its country, a landline (no SMS)."""
    raw = text.strip()
    candidate = "+" + raw[2:] if raw.startswith("00") else raw
    if not candidate.startswith("+"):
        raise ValueError(f"phone {raw!r} is not in international form (+ and country code)")
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {raw!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"phone {raw!r} is not a valid number")
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE:
        raise ValueError(f"phone {raw!r} is a landline; SMS needs a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _max_length(column: str) -> int | None:
    """The column's length limit (``VARCHAR(n)``: PostgreSQL enforces it, SQLite does not)."""
    found = Recipient.__table__.columns.get(column)  # type: ignore[attr-defined]
    return getattr(found.type, "length", None) if found is not None else None


def _existing(session: Session, emails: list[str]) -> set[str]:
    """Which of ``emails`` (lower-cased) are already recipients."""
    rows = session.execute(select(col(Recipient.email)).where(col(Recipient.email).in_(emails)))
    return {str(e).lower() for e in rows.scalars()}


def import_csv(engine: Engine, path: Path, *, skip_invalid: bool = False) -> ImportReport:
    """Validate every line of ``path``, then insert (all, or with ``skip_invalid`` the valid)."""
    report = ImportReport()
    columns = set(Recipient.model_fields) - {"id", "created_at"}
    seen: dict[str, int] = {}
    bad: set[int] = set()
    pending: list[tuple[int, str]] = []

    def check_existing(session: Session) -> None:
        known = _existing(session, [e for _, e in pending])
        for line, email in pending:
            if email in known:
                report.rejected.append((line, f"{email} is already a recipient"))
                bad.add(line)
        pending.clear()

    with Session(engine) as session:
        for line, raw in _rows(path):
            report.lines += 1
            try:
                values = _validated(line, raw, columns)
            except ValueError as exc:
                report.rejected.append((line, str(exc)))
                bad.add(line)
                continue
            folded = str(values["email"])  # lower-cased by _validated
            if folded in seen:
                report.rejected.append((line, f"duplicate of line {seen[folded]} ({folded})"))
                bad.add(line)
                continue
            seen[folded] = line
            pending.append((line, folded))
            if len(pending) >= _LOOKUP_CHUNK:
                check_existing(session)
        if pending:
            check_existing(session)
    report.rejected.sort()
    if report.rejected and not skip_invalid:
        return report

    def good_rows() -> Iterator[dict[str, object]]:
        now = utcnow()
        for line, raw in _rows(path):
            if line in bad:
                continue
            values = _validated(line, raw, columns)
            values["created_at"] = now
            report.imported += 1
            report.suppressed += not values["consent"]
            yield values

    with Session(engine) as session:
        insert_recipients(session, good_rows())
        session.commit()
    report.written = True
    return report
