"""Channel limit checks: pure functions, no I/O. Approved text is never truncated."""

from __future__ import annotations

from collections.abc import Mapping

from crisiscomms.delivery.contract import ChannelLimits
from crisiscomms.render.sms_segments import sms_segments
from crisiscomms.render.text_length import counted_length, graphemes
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
    if limits.max_graphemes is not None and "text" in parts:
        count = counted_length(parts["text"], url_length=limits.url_length)
        if count > limits.max_graphemes:
            how = (f"characters (grapheme clusters; every URL counts {limits.url_length})"
                   if limits.url_length is not None else "graphemes (links count as written)")
            problems.append(f"text is {count} {how}, over the limit of {limits.max_graphemes}")
    if limits.max_alt_chars is not None and "alt" in parts:
        count = graphemes(parts["alt"])
        if count > limits.max_alt_chars:
            problems.append(f"alt is {count} graphemes, over the limit of "
                            f"{limits.max_alt_chars} for an image description")
    if limits.max_alt_chars is not None and "image" in parts:
        image = parts["image"].strip()
        if image and (not image.startswith(("http://", "https://")) or " " in image):
            problems.append("image is not one http(s) URL")
    if limits.max_paragraph_chars is not None:
        for n, paragraph in enumerate(parts.get("text", "").split("\n\n"), start=1):
            if len(paragraph) > limits.max_paragraph_chars:
                problems.append(f"text paragraph {n} is {len(paragraph)} characters, over "
                                f"the limit of {limits.max_paragraph_chars} per block")
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
