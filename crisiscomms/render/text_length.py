"""Text length as the fediverse and Bluesky count it: grapheme clusters, not code points.

- **Mastodon** (``StatusLengthValidator``) counts the extended grapheme clusters of a status
  after replacing every URL it recognises by 23 characters (``URL_PLACEHOLDER``), so a long
  status page link costs the same as a short one. The limit is the server's
  (``configuration.statuses.max_characters``; 500 on a stock server).
- **Bluesky** (``app.bsky.feed.post``) limits ``text`` to 300 graphemes and 3,000 UTF-8
  bytes. Links are *facets* (byte ranges of the text pointing at a URI): the text is counted
  as written, links included; we post a link in full (approved text is never shortened).

Grapheme clusters come from the ``regex`` library's ``\\X`` (Unicode's extended grapheme
clusters: a flag, a family emoji, a letter with its combining accents are one each).
"""

from __future__ import annotations

import unicodedata

import regex

_GRAPHEME = regex.compile(r"\X")
# A link as Mastodon's extractor and Bluesky's apps find one: a scheme, then anything up to
# white space; trailing punctuation (and an unbalanced closing parenthesis) stays outside.
_URL = regex.compile(r"https?://[^\s<>\"]+", regex.IGNORECASE)
_TRAILING = ".,:;!?'\"*]}>"

MASTODON_URL_LENGTH = 23
"""What Mastodon counts for every URL, whatever its length."""


def graphemes(text: str) -> int:
    """Extended grapheme clusters of ``text`` (NFC-normalised first, as servers store it)."""
    return len(_GRAPHEME.findall(unicodedata.normalize("NFC", text)))


def url_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every http(s) link of ``text``, trailing punctuation left out."""
    spans: list[tuple[int, int]] = []
    for match in _URL.finditer(text):
        start, end = match.span()
        url = match.group(0)
        while url and (url[-1] in _TRAILING or (url[-1] == ")"
                                                and url.count("(") < url.count(")"))):
            url, end = url[:-1], end - 1
        if len(url) > url.index("//") + 2:
            spans.append((start, end))
    return spans


def counted_length(text: str, *, url_length: int | None = None) -> int:
    """Grapheme clusters of ``text``; with ``url_length``, every link counts that many
    (Mastodon: 23), else links count as written (Bluesky)."""
    normalized = unicodedata.normalize("NFC", text)
    if url_length is None:
        return graphemes(normalized)
    total, position = 0, 0
    for start, end in url_spans(normalized):
        total += graphemes(normalized[position:start]) + url_length
        position = end
    return total + graphemes(normalized[position:])
