"""The provider's substitution pass: every key of a recipient's substitutions replaced by its
value, in one left-to-right pass (values are not re-scanned), as SendGrid fills
``%first_name%`` in each personalization.

Kept here, not in the emulator, because two callers must agree on it: the SendGrid emulator
(which stands in for the provider in tests and drills) and the dashboard's preview (which shows
an approver the email a sample recipient will read). A preview filled any other way could show
words no recipient gets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache


@lru_cache(maxsize=512)
def _substitution_pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so a key that is a prefix of another does not shadow it.
    ordered = sorted(keys, key=lambda k: (-len(k), k))
    return re.compile("|".join(re.escape(k) for k in ordered))


def apply_substitutions(text: str | None,
                        substitutions: Mapping[str, str] | None) -> str | None:
    """Replace every substitution key by its value in one pass (values are not re-scanned)."""
    if text is None or not substitutions:
        return text
    keys = tuple(k for k in substitutions if k)
    if not keys:
        return text
    pattern = _substitution_pattern(keys)
    return pattern.sub(lambda match: substitutions[match.group(0)], text)
