"""Channel limit checks: pure functions, no I/O. Approved text is never truncated."""

from __future__ import annotations

from collections.abc import Mapping

from crisiscomms.delivery.contract import ChannelLimits
from crisiscomms.render.sms_segments import sms_segments
from crisiscomms.render.text_weight import x_weighted_length


def limit_problems(limits: ChannelLimits, parts: Mapping[str, str]) -> list[str]:
    """Every limit the parts break, each named with the figures."""
    problems: list[str] = []
    if limits.max_weighted_length is not None:
        weight = x_weighted_length(parts.get("text", ""))
        if weight > limits.max_weighted_length:
            problems.append(
                f"text is {weight} weighted characters, over the limit of "
                f"{limits.max_weighted_length} (URLs count 23, CJK and emoji count 2)"
            )
    if limits.max_segments is not None and "text" in parts:
        segments = sms_segments(parts["text"])
        if segments.count > limits.max_segments:
            problems.append(
                f"text is {segments.describe()}, over the limit of {limits.max_segments} "
                f"segment{'s' if limits.max_segments != 1 else ''}"
            )
    if limits.max_subject_chars is not None:
        subject = parts.get("subject", "")
        if len(subject) > limits.max_subject_chars:
            problems.append(
                f"subject is {len(subject)} characters, over {limits.max_subject_chars}"
            )
        if "\n" in subject or "\r" in subject:
            problems.append("subject contains a line break")
    if limits.max_body_bytes is not None:
        for name, value in parts.items():
            size = len(value.encode())
            if size > limits.max_body_bytes:
                problems.append(f"{name} is {size} bytes, over {limits.max_body_bytes}")
    for name, value in parts.items():
        if not value.strip():
            problems.append(f"{name} is empty")
    return problems
