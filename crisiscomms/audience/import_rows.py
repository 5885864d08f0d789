"""The recipient import's rules for one file: which columns it may have, and each line's values
checked, a chunk of lines at a time.

A chunk is checked column by column: each column's values are tested together (one regular
expression over the chunk's addresses, each distinct domain, locale and time zone once, one
scan of a text column for what the text rule refuses), and only a column whose chunk fails is
checked value by value to name the line and the reason. The result is the same as checking
each value on its own (``tests/unit/test_import_rows.py`` holds the fast path to the slow
one), a few times faster: a million lines are mostly the CSV parser's time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import repeat
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from crisiscomms.core.text import clean_text

ALLOWED_COLUMNS = ("email", "name", "locale", "time_zone", "phone", "plan", "product",
                   "order_ref", "lists", "unsubscribed", "suppressed")
"""The columns an import may have. Everything else the table holds (``consent``, the
unsubscribe and confirmation tokens, subscriptions, suppression reasons, ids) is the engine's
to record: a file that names one is refused, so an import can never plant a known token."""
TEXT_COLUMNS = ("name", "plan", "product", "order_ref", "lists")
FLAG_COLUMNS = ("unsubscribed", "suppressed")
MAX_LENGTHS = {"email": 254, "name": 200, "locale": 16, "time_zone": 64, "plan": 64,
               "product": 200, "order_ref": 64, "lists": 200}
"""Each column's ``VARCHAR(n)`` (PostgreSQL enforces it, SQLite does not): checked here."""
TRUE = frozenset({"1", "true", "yes", "y", "t"})
FALSE = frozenset({"0", "false", "no", "n", "f", ""})
ROW_FIELDS = ("email", "name", "locale", "time_zone", "plan", "product", "order_ref", "lists",
              "phone", "consent")
"""The order of the values in each checked row (after its line number)."""

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = rf"(?=[^@\n]{{1,64}}@){_ATOM}(?:\.{_ATOM})*"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"{_LOCAL}@({_DOMAIN})")
_PLAIN_ADDRESSES = re.compile(rf"(?:{_LOCAL}@{_DOMAIN}\n)*")
_DOMAINS = re.compile(rf"@({_DOMAIN})\n")
_UNSAFE_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    "\u2028\u2029\u200b\u200c\u200d\u2060\ufeff]"
    "|[\U0001fffe-\U0001ffff\U0002fffe-\U0002ffff\U0003fffe-\U0003ffff\U0004fffe-\U0004ffff"
    "\U0005fffe-\U0005ffff\U0006fffe-\U0006ffff\U0007fffe-\U0007ffff\U0008fffe-\U0008ffff"
    "\U0009fffe-\U0009ffff\U000afffe-\U000affff\U000bfffe-\U000bffff\U000cfffe-\U000cffff"
    "\U000dfffe-\U000dffff\U000efffe-\U000effff\U000ffffe-\U000fffff\U0010fffe-\U0010ffff]")
"""Anything the text rule refuses, strips or rewrites: a chunk of a column without any is
stored as it is (stripped of surrounding spaces); a chunk with one is checked value by value."""
_ASCII_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")
""":data:`_UNSAFE_TEXT` within ASCII (the line breaks that join a column's values aside)."""
_EDGE_SPACE = re.compile(r"^[^\S\n]|[^\S\n]$", re.MULTILINE)
"""A value (of a column joined by line breaks) that starts or ends with white space."""
_NON_ASCII = re.compile("[^\x00-\x7f]+")

Row = tuple[object, ...]


def column_problems(header: Sequence[str]) -> list[str]:
    """What is wrong with the header row (names already lower-cased and stripped)."""
    problems = []
    if "email" not in header:
        separated = len(header) == 1 and next((sep for sep in ";\t|" if sep in header[0]), None)
        hint = (f" (the file seems separated by {separated!r}: save it as comma-separated CSV)"
                if separated else "")
        problems.append(f"the header row has no 'email' column{hint}")
        if separated:
            return problems
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(f"the column {name!r} appears twice")
        seen.add(name)
        if name in ALLOWED_COLUMNS:
            continue
        if name == "consent":
            problems.append("'consent' cannot be imported (the engine records consent); mark "
                            "people who opted out with an 'unsubscribed' column (true/false)")
        else:
            problems.append(f"unknown column {name!r} (an import may have: "
                            f"{', '.join(ALLOWED_COLUMNS)})")
    return problems


@lru_cache(maxsize=65_536)
def _domain(domain: str) -> str | None:
    """``domain`` lower-cased when email-validator accepts it as it is (ASCII, not special
    use, as a normalised address would hold it), else None: check the address on its own."""
    try:
        found = validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None
    return found.lower() if found.lower() == domain.lower() else None


def check_email(value: str) -> str:
    """The address as stored (normalised, lower-cased); ValueError naming what is wrong."""
    address = value.strip()
    if not address:
        raise ValueError("email is empty")
    plain = _PLAIN_ADDRESS.fullmatch(address)
    if plain is not None and len(address) <= MAX_LENGTHS["email"] and _domain(plain.group(1)):
        return address.lower()
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email {address!r}: {exc}") from None


def check_text(column: str, value: str) -> str | None:
    """A personal field as stored, under the text rule (:mod:`crisiscomms.core.text`)."""
    try:
        text = clean_text(value.strip(" \t\r\n"), single_line=True).strip()
    except ValueError as exc:
        raise ValueError(f"{column}: {exc}") from None
    limit = MAX_LENGTHS[column]
    if len(text) > limit:
        raise ValueError(f"{column}: {len(text):,} characters, over the {limit} a recipient's "
                         "may have")
    return text or None


@lru_cache(maxsize=4096)
def check_locale(value: str) -> str:
    locale = value.strip() or "en"
    if len(locale) > MAX_LENGTHS["locale"] or not locale.replace("-", "").replace(
            "_", "").isalnum():
        raise ValueError(f"locale {locale!r} is not a language tag")
    return locale


@lru_cache(maxsize=4096)
def check_time_zone(value: str) -> str:
    zone = value.strip() or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None
    return zone


@lru_cache(maxsize=256)
def check_flag(column: str, value: str) -> bool:
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{column} must be true or false, got {value!r}")


def e164(text: str) -> str:
    """A mobile number in E.164 (``+14155550100``), from international notation (``+`` or
    ``00`` and the country code; spaces, dots, dashes and brackets allowed); ValueError naming
    what is wrong: not a number, not a valid one for its country, a landline (no SMS)."""
    import phonenumbers

    raw = text.strip()
    candidate = "+" + raw[2:] if raw.startswith("00") else raw
    if not candidate.startswith("+"):
        raise ValueError(f"phone {raw!r} is not in international form (+ and country code)")
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {raw!r} is not a phone number: {exc}") from None
    # number_type is UNKNOWN exactly when is_valid_number is False (both find the region, the
    # slow part, then match the same patterns): one call instead of two halves the time
    kind = phonenumbers.number_type(number)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        raise ValueError(f"phone {raw!r} is not a valid number")
    if kind == phonenumbers.PhoneNumberType.FIXED_LINE:
        raise ValueError(f"phone {raw!r} is a landline; SMS needs a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_phone(value: str) -> str | None:
    """An optional phone column: empty is no number, anything else must be :func:`e164`."""
    return e164(value) if value.strip() else None


@dataclass
class Checked:
    """A chunk's lines that passed, column by column, and those refused."""

    lines: Sequence[int]
    """The line number of each row that passed, in file order."""
    values: tuple[Sequence[object], ...]
    """One sequence per :data:`ROW_FIELDS` name, in that order, each as long as ``lines``."""
    rejected: list[tuple[int, str]]

    @property
    def rows(self) -> list[Row]:
        """``(line, email, name, locale, time_zone, plan, product, order_ref, lists, phone,
        consent)`` for each row that passed."""
        return list(zip(self.lines, *self.values, strict=True))


def _each(values: Sequence[str], check: Callable[[str], object],
          errors: dict[int, str]) -> list[object]:
    out: list[object] = []
    for i, value in enumerate(values):
        try:
            out.append(check(value))
        except ValueError as exc:
            errors.setdefault(i, str(exc))
            out.append(None)
    return out


def _within(column: str, values: Sequence[str], longest: int | None) -> bool:
    """No value is over its column's length (``longest``: no value is longer, when known)."""
    limit = MAX_LENGTHS[column]
    return (longest is not None and longest <= limit) or max(map(len, values)) <= limit


def _emails(values: Sequence[str], errors: dict[int, str], *,
            longest: int | None = None) -> Sequence[object]:
    joined = "\n".join(values) + "\n"
    if (_PLAIN_ADDRESSES.fullmatch(joined) and _within("email", values, longest)
            and all(_domain(d) for d in set(_DOMAINS.findall(joined)))):
        lowered = joined.lower().split("\n")
        lowered.pop()
        if len(lowered) == len(values):  # no address held a line break of its own
            return lowered
    return _each(values, check_email, errors)


def _texts(column: str, values: Sequence[str], errors: dict[int, str], *,
           longest: int | None = None) -> Sequence[object]:
    """``longest``: no value is longer (the block's longest line), when known."""
    joined = "\n".join(values)
    wide = ""
    if joined.count("\n") != len(values) - 1 or _ASCII_CONTROL.search(joined):
        safe = False  # a control character (a line break inside a value is one)
    else:  # the rest of what the rule refuses is outside ASCII: searched only there
        wide = "" if joined.isascii() else "".join(_NON_ASCII.findall(joined))
        safe = not _UNSAFE_TEXT.search(wide)
    edged = safe and (" \n" in joined or "\n " in joined or joined.startswith(" ")
                      or joined.endswith(" ")
                      or (any(map(str.isspace, wide)) and bool(_EDGE_SPACE.search(joined))))
    if safe and _within(column, values, longest):
        if edged:
            return [v.strip() or None for v in values]
        return [v or None for v in values] if "" in values else values
    return _each(values, lambda v: check_text(column, v), errors)


def _by_value(values: Sequence[str], check: Callable[[str], object],
              errors: dict[int, str]) -> Sequence[object]:
    """A column of few distinct values (locale, time zone, flags): each checked once."""
    known: dict[str, object] = {}
    bad: dict[str, str] = {}
    for value in set(values):
        try:
            known[value] = check(value)
        except ValueError as exc:
            bad[value] = str(exc)
    if bad:
        for i, value in enumerate(values):
            if value in bad:
                errors.setdefault(i, bad[value])
    elif all(known[v] == v for v in known):
        return values  # every value is stored as it is
    return [known.get(v) for v in values]


def check_chunk(header: Sequence[str], chunk: Sequence[tuple[int, list[str]]]) -> Checked:
    """Check a chunk of parsed lines against the (already accepted) header."""
    width = len(header)
    good = [(line, fields) for line, fields in chunk if len(fields) == width]
    rejected = [] if len(good) == len(chunk) else [
        (line, f"{len(fields)} fields, the header row has {width}")
        for line, fields in chunk if len(fields) != width]
    if not good:
        return Checked([], tuple([] for _ in ROW_FIELDS), rejected)
    columns = dict(zip(header, zip(*(fields for _, fields in good), strict=True), strict=True))
    checked = check_columns(header, [line for line, _ in good], columns)
    if rejected:
        checked.rejected = sorted(rejected + checked.rejected)
    return checked


def check_lines(header: Sequence[str], first: int, lines: Sequence[str]) -> Checked:
    """Check lines ``first``, ``first + 1``... each one record whose fields are its text split
    on commas (a :class:`~.csv_lines.PlainBlock`): cut into columns in one split when every
    line has the header's width (the usual file), else line by line."""
    width = len(header)
    if set(map(str.count, lines, repeat(","))) != {width - 1}:
        return check_chunk(header, [(first + i, line.split(","))
                                    for i, line in enumerate(lines)])
    every = ",".join(lines).split(",")
    columns = {name: every[at::width] for at, name in enumerate(header)}
    return check_columns(header, range(first, first + len(lines)), columns,
                         longest=max(map(len, lines)))


def check_columns(header: Sequence[str], lines: Sequence[int],
                  columns: Mapping[str, Sequence[str]], *, longest: int | None = None
                  ) -> Checked:
    """Check the values of ``lines``, given column by column (every column as long as
    ``lines``); a column the file does not have takes its default. ``longest``: no value is
    longer (a plain block's longest line), which spares most columns their length scan."""
    count = len(lines)
    errors: dict[int, str] = {}
    nothing: Sequence[object] = [None] * count

    def column(name: str, fill: str) -> Sequence[str]:
        return columns.get(name) or (fill,) * count

    emails = _emails(column("email", ""), errors, longest=longest)
    consent: Sequence[object] = [True] * count
    for flag in FLAG_COLUMNS:
        if flag in columns:
            marks = _by_value(columns[flag], partial(check_flag, flag), errors)
            consent = [c and not m for c, m in zip(consent, marks, strict=True)]
    locales = _by_value(column("locale", ""), check_locale, errors)
    zones = _by_value(column("time_zone", ""), check_time_zone, errors)
    texts = {name: (_texts(name, columns[name], errors, longest=longest) if name in columns
                    else nothing)
             for name in TEXT_COLUMNS}
    phones = _each(columns["phone"], check_phone, errors) if "phone" in columns else nothing
    values = (emails, texts["name"], locales, zones, texts["plan"], texts["product"],
              texts["order_ref"], texts["lists"], phones, consent)
    if not errors:  # the common chunk: every line passed
        return Checked(lines, values, [])
    kept = [i for i in range(count) if i not in errors]
    rejected = sorted((lines[i], reason) for i, reason in errors.items())
    return Checked([lines[i] for i in kept],
                   tuple([column[i] for i in kept] for column in values), rejected)
