"""X (Twitter) weighted text length, as the X API counts it against the 280 limit.

The rules follow twitter-text configuration v3:

- the text is NFC-normalised first;
- each http(s) URL counts 23, whatever its length (X wraps it in a t.co link);
- code points in U+0000-U+10FF, U+2000-U+200D, U+2010-U+201F and U+2032-U+2037 weigh 1,
  every other code point weighs 2 (CJK, most symbols, emoji);
- an emoji *sequence* (base plus variation selector, skin-tone modifier, keycap, tag
  characters, a flag made of two regional indicators, or emoji joined by ZERO WIDTH JOINER)
  weighs 2 as a whole, like a single emoji.

URLs without a scheme (``example.com``) are not recognised here; X counts those as 23 too,
so such text is counted at its character weight, which can only over- or under-count
by the difference between the domain's length and 23.
"""

from __future__ import annotations

import re
import unicodedata

X_MAX_WEIGHTED_LENGTH = 280
X_URL_WEIGHT = 23

_LIGHT_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x10FF),
    (0x2000, 0x200D),
    (0x2010, 0x201F),
    (0x2032, 0x2037),
)

# Code points that can start an emoji sequence (a practical subset of Unicode's Emoji set).
_EMOJI_BASE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x21AA),
    (0x231A, 0x23FF),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25FE),
    (0x2600, 0x27BF),
    (0x2934, 0x2935),
    (0x2B00, 0x2BFF),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3297),
    (0x3299, 0x3299),
    (0x1F000, 0x1FAFF),
)

_ZWJ = 0x200D
_KEYCAP = 0x20E3
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)

# A URL: scheme, then anything up to white space; trailing punctuation is trimmed below.
_URL_RE = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,:;!?'\"*]}>"


def _in(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _char_weight(cp: int) -> int:
    return 1 if _in(cp, _LIGHT_RANGES) else 2


def _is_modifier(cp: int) -> bool:
    """Code points that attach to the preceding emoji and add no weight of their own."""
    return (
        cp in (0xFE0E, 0xFE0F, _KEYCAP)
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tones
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
    )


def _is_emoji_base(cp: int) -> bool:
    return _in(cp, _EMOJI_BASE_RANGES)


def _is_regional_indicator(cp: int) -> bool:
    return _REGIONAL_INDICATORS[0] <= cp <= _REGIONAL_INDICATORS[1]


def _text_weight(text: str) -> int:
    """Weight of text that holds no URL."""
    cps = [ord(c) for c in text]
    n = len(cps)
    total = 0
    i = 0
    while i < n:
        cp = cps[i]
        # Flags: a pair of regional indicators is one emoji.
        if _is_regional_indicator(cp) and i + 1 < n and _is_regional_indicator(cps[i + 1]):
            total += 2
            i += 2
            continue
        # Keycaps: [0-9#*] FE0F? 20E3 is one emoji.
        if chr(cp) in "0123456789#*":
            j = i + 1
            if j < n and cps[j] == 0xFE0F:
                j += 1
            if j < n and cps[j] == _KEYCAP:
                total += 2
                i = j + 1
                continue
        if _is_emoji_base(cp):
            j = i + 1
            while j < n:
                if _is_modifier(cps[j]):
                    j += 1
                elif cps[j] == _ZWJ and j + 1 < n and _is_emoji_base(cps[j + 1]):
                    j += 2
                else:
                    break
            if j > i + 1:  # a sequence: one emoji
                total += 2
                i = j
                continue
        total += _char_weight(cp)
        i += 1
    return total


def _url_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for match in _URL_RE.finditer(text):
        start, end = match.span()
        url = match.group(0)
        # Trim trailing punctuation, and a closing parenthesis that has no opening one.
        while url:
            last = url[-1]
            if last in _TRAILING_PUNCTUATION or (last == ")" and url.count("(") < url.count(")")):
                url = url[:-1]
                end -= 1
            else:
                break
        if len(url) > url.index("//") + 2:  # something after the scheme
            spans.append((start, end))
    return spans


def x_weighted_length(text: str) -> int:
    """Return the length X counts for ``text`` (limit: 280)."""
    normalized = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    for start, end in _url_spans(normalized):
        total += _text_weight(normalized[position:start]) + X_URL_WEIGHT
        position = end
    return total + _text_weight(normalized[position:])
