"""Text a person typed, shown by Streamlit elements that read markdown (``st.error``,
``st.caption``...), as the characters it holds.

Why: an error message repeats the value at fault (a URL, a title), and a facts value is the PR
lead's or a customer's text: ``[click](https://evil.example)``, ``:red[...]`` or ``$x$`` must
show as typed, never become a link, a colour or a formula. Every ASCII punctuation character is
backslash-escaped (CommonMark allows it for each of them, and Streamlit's own directives start
with ``:``); HTML is never allowed by these elements in this app.
"""

from __future__ import annotations

import string

_PUNCTUATION = frozenset(string.punctuation)


def plain(text: str) -> str:
    """``text`` escaped so markdown shows it literally (newlines kept as line breaks)."""
    escaped = "".join(f"\\{c}" if c in _PUNCTUATION else c for c in text)
    return escaped.replace("\n", "  \n")
