"""SMS segments as carriers count them (3GPP TS 23.038 / 23.040), without I/O.

A message is sent in the GSM 7-bit default alphabet when every character is in it (its basic
table, or its extension table: ``^ { } \\ [ ~ ] | €`` and form feed, which cost two septets,
an escape and the character); otherwise the whole message goes as UCS-2 (UTF-16 code units:
an emoji outside the Basic Multilingual Plane costs two). One segment holds 160 septets or 70
UCS-2 units; a longer message is concatenated, each segment losing room to its user data
header: 153 septets or 67 units each. An escape sequence and a surrogate pair are never split
across two segments, so the count comes from filling segments character by character (what
Twilio's segment calculator does), not from dividing the length.

One Japanese character or one emoji turns a whole message into UCS-2: 71 characters that fit
one GSM-7 segment twice over cost two UCS-2 segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The 128 characters of the GSM 03.38 default alphabet (one septet each; ESC excluded)."""
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
"""The default extension table: an escape septet plus the character (two septets each)."""

SINGLE = {"GSM-7": 160, "UCS-2": 70}
"""Units one unsegmented message holds."""
CONCATENATED = {"GSM-7": 153, "UCS-2": 67}
"""Units each segment of a concatenated message holds (the user data header takes the rest)."""


class Encoding(StrEnum):
    gsm7 = "GSM-7"
    ucs2 = "UCS-2"


@dataclass(frozen=True)
class Segments:
    """How a text goes out: its encoding, its length in that encoding's units (septets or
    UTF-16 code units) and the segments a carrier bills."""

    encoding: Encoding
    units: int
    count: int
    non_gsm: tuple[str, ...] = ()
    """The first characters (up to five, distinct) that forced UCS-2, for the error message."""

    def describe(self) -> str:
        unit = "septets" if self.encoding is Encoding.gsm7 else "UTF-16 units"
        text = f"{self.count} SMS segment{'s' if self.count != 1 else ''} " \
               f"({self.encoding.value}, {self.units} {unit})"
        if self.non_gsm:
            shown = " ".join(repr(c) for c in self.non_gsm)
            text += f"; UCS-2 because of {shown}"
        return text


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _costs(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.gsm7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def sms_segments(text: str) -> Segments:
    """The encoding, length and segment count of ``text`` (an empty text is one segment)."""
    encoding = Encoding.gsm7 if is_gsm7(text) else Encoding.ucs2
    non_gsm: tuple[str, ...] = ()
    if encoding is Encoding.ucs2:
        seen: list[str] = []
        for c in text:
            if c not in GSM7_BASIC and c not in GSM7_EXTENSION and c not in seen:
                seen.append(c)
                if len(seen) == 5:
                    break
        non_gsm = tuple(seen)
    costs = _costs(text, encoding)
    units = sum(costs)
    if units <= SINGLE[encoding.value]:
        return Segments(encoding, units, 1, non_gsm)
    room = CONCATENATED[encoding.value]
    count, used = 1, 0
    for cost in costs:  # an escape pair or a surrogate pair never straddles two segments
        if used + cost > room:
            count, used = count + 1, 0
        used += cost
    return Segments(encoding, units, count, non_gsm)
