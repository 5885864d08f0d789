"""Typed text shown by markdown-reading elements stays the characters typed."""

from __future__ import annotations

import string

from crisiscomms.dashboard.plain_text import plain


def test_every_ascii_punctuation_is_escaped_and_nothing_else() -> None:
    assert plain("[click](https://evil.example) **b** :red[x] $x$") == (
        r"\[click\]\(https\:\/\/evil\.example\) \*\*b\*\* \:red\[x\] \$x\$")
    assert plain("Café 東京 abc 123") == "Café 東京 abc 123"
    assert all(plain(c) == "\\" + c for c in string.punctuation)


def test_newlines_stay_line_breaks() -> None:
    assert plain("a\nb") == "a  \nb"
