"""Text hygiene: what free text from people (facts, recipient fields) may hold, and URLs.

Every channel must be able to carry a fact literally, and the status page's feeds are XML 1.0,
so the rule is XML 1.0's character set, tightened:

- **refused** (a clear error naming the character and where it is): C0 controls except
  newline and tab (ESC, BEL, BS, NUL...), DEL, C1 controls (U+0080-U+009F), the bidi
  embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069: they reorder what a reader
  sees, "Trojan Source"), lone surrogates and noncharacters (U+FDD0-U+FDEF, U+xFFFE/U+xFFFF);
- **normalised**: ``\\r\\n`` and a lone ``\\r`` become ``\\n``;
- **stripped**: zero-width characters (U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER,
  U+FEFF BOM), and U+200C/U+200D (ZWNJ/ZWJ) except between two non-ASCII characters, where
  they are spelling (Persian, Indic scripts) or part of an emoji (👩‍💻), never an invisible
  break inside an ASCII word;
- **kept**: newline, tab, every other character, including the implicit direction marks
  U+200E/U+200F/U+061C (LRM, RLM, ALM): right-to-left text needs them to place punctuation,
  and they cannot reorder letters the way an override can.

``clean_text`` applies the rule (ValueError with the reason when refused); ``text_problem``
says what it would refuse without changing anything (the status page's check of its own
state); ``scrub`` removes what the rule refuses or strips (the status page's repair).
``check_url`` is the rule for URL facts.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

_CONTROL_NAMES = {
    0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x0B: "VT", 0x0C: "FF", 0x1B: "ESC", 0x7F: "DEL",
}
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Embeddings, overrides and isolates: refused."""
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
"""Stripped (ZWNJ/ZWJ kept between two non-ASCII characters)."""

_REFUSED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"
    "|[\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff\U0004fffe\U0004ffff"
    "\U0005fffe\U0005ffff\U0006fffe\U0006ffff\U0007fffe\U0007ffff\U0008fffe\U0008ffff"
    "\U0009fffe\U0009ffff\U000afffe\U000affff\U000bfffe\U000bffff\U000cfffe\U000cffff"
    "\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff\U0010fffe\U0010ffff]"
)
_ALWAYS_STRIPPED = re.compile("[\u200b\u2060\ufeff]")
_JOINER = re.compile("[\u200c\u200d]")
_NEWLINES = re.compile("\r\n?")


def describe(char: str) -> str:
    """``U+001B (ESC)``, ``U+202E (RIGHT-TO-LEFT OVERRIDE)``."""
    code = ord(char)
    name = _CONTROL_NAMES.get(code) or unicodedata.name(char, "")
    if not name and 0xD800 <= code <= 0xDFFF:
        name = "lone surrogate"
    elif not name and (0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE):
        name = "noncharacter"
    elif not name:
        name = "control character"
    return f"U+{code:04X} ({name})"


def _kind(char: str) -> str:
    code = ord(char)
    if char in BIDI_CONTROLS:
        return "a bidi override"
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return "a control character"
    return "a noncharacter"


def text_problem(value: str, *, single_line: bool = False) -> str | None:
    """Why ``value`` would be refused (the first offending character and its position), or
    None. ``single_line`` refuses newlines and tabs too (a name, an order reference)."""
    found = _REFUSED.search(value)
    if single_line:
        line = re.search("[\t\n\r\u2028\u2029]", value)
        if line is not None and (found is None or line.start() < found.start()):
            found = line
    if found is None:
        return None
    char = found.group()
    if single_line and char in "\t\n\r\u2028\u2029":
        return f"holds a line break or tab {describe(char)} at character {found.start() + 1}; " \
               "it must be one line"
    kind = _kind(char)
    hint = " (newline and tab are the only ones allowed)" if kind == "a control character" else ""
    return f"holds {kind} {describe(char)} at character {found.start() + 1}; remove it{hint}"


def _strip_joiners(value: str) -> str:
    def keep(match: re.Match[str]) -> str:
        at = match.start()
        before = value[at - 1] if at > 0 else ""
        after = value[at + 1] if at + 1 < len(value) else ""
        joins = all(c and not c.isascii() and not c.isspace() and c not in ZERO_WIDTH
                    for c in (before, after))
        return match.group() if joins else ""

    return _JOINER.sub(keep, value)


def clean_text(value: str, *, single_line: bool = False) -> str:
    """``value`` as it may be stored: newlines normalised, zero-width characters stripped;
    ValueError (the reason, see :func:`text_problem`) when it holds a refused character."""
    if not single_line:
        value = _NEWLINES.sub("\n", value)
    problem = text_problem(value, single_line=single_line)
    if problem is not None:
        raise ValueError(problem)
    value = _ALWAYS_STRIPPED.sub("", value)
    return _strip_joiners(value) if "\u200c" in value or "\u200d" in value else value


def printable(value: str) -> str:
    """``value`` with each character the rule refuses written as an escape (``\\x1b``,
    ``\\u202e``): safe to print in an error message that names a key holding one."""
    return _REFUSED.sub(lambda m: m.group().encode("unicode_escape",
                                                   "backslashreplace").decode("ascii"), value)


def scrub(value: str) -> str:
    """``value`` with every refused character removed and the rule applied (repairing text
    stored before the rule existed)."""
    return clean_text(_REFUSED.sub("", _NEWLINES.sub("\n", value)))


URL_MAX_LENGTH = 2048
URL_SCHEMES = ("https", "http")
_URL_FORBIDDEN = re.compile(r"""[\s"'<>\\`{}|^\[\]]""")
_HOST_LABEL = re.compile(r"^(?!-)[^\W_](?:[\w-]{0,61}[^\W_])?$")


def check_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL a reader can safely follow; ValueError
    naming what is wrong otherwise.

    Parsed with :func:`urllib.parse.urlsplit`: the scheme is https or http (the local
    emulators and intranet pages are plain http), a host made of DNS labels (an IDN is fine),
    a valid port if any, no user info (``https://bank.example@evil.example``), and none of
    ``" ' < > \\ ` { } | ^ [ ]``, spaces or control characters anywhere (percent-encode them).
    """
    problem = text_problem(value, single_line=True)
    if problem is not None:
        raise ValueError(f"must be a URL: {problem}")
    if len(value) > URL_MAX_LENGTH:
        raise ValueError(f"must be a URL of at most {URL_MAX_LENGTH} characters")
    bad = _URL_FORBIDDEN.search(value)
    if bad is not None:
        raise ValueError(f"must be a URL without quotes, brackets, backslashes or spaces: "
                         f"{describe(bad.group())} at character {bad.start() + 1} "
                         "(percent-encode it)")
    if any(c in ZERO_WIDTH for c in value):
        raise ValueError("must be a URL without invisible characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"must be a URL: {exc}") from None
    if parts.scheme.lower() not in URL_SCHEMES or not value.lower().startswith(
            tuple(f"{s}://" for s in URL_SCHEMES)):
        raise ValueError("must be an http(s) URL (https://...)")
    if "@" in parts.netloc:
        raise ValueError("must be a URL without a user name or password before the host")
    host = parts.hostname or ""
    labels = host.rstrip(".").split(".")
    if not host or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"must be a URL with a host name, got {host or 'none'!r}")
    if port is not None and port == 0:
        raise ValueError("must be a URL with a valid port")
    return value
