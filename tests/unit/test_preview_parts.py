"""The preview's pure parts: a thread's posts in order with X's weighted count, and the
per-part diff against the published message."""

from __future__ import annotations

from crisiscomms.incident.preview import _diff, _lengths, thread_parts
from crisiscomms.render.substitutions import apply_substitutions


def test_thread_posts_in_order_each_weighed_as_x_counts() -> None:
    parts = {"text_10x": "ignored", "text_2": "二", "text": "one https://example.com/a/long/path",
             "text_3": "three"}
    assert thread_parts(parts) == ["text", "text_2", "text_3", "text_10x"]
    assert [(p.part, p.weighted, p.limit) for p in _lengths(parts, 280)] == [
        ("text", 4 + 23, 280), ("text_2", 2, 280), ("text_3", 5, 280)]


def test_diff_per_part_names_both_stages_and_only_changed_lines() -> None:
    old = {"subject": "Outage [X-1]", "text": "Hi Alex,\nWe are looking.\nRef X-1"}
    new = {"subject": "Outage [X-1]", "text": "Hi Alex,\nWe found the cause.\nRef X-1"}
    by_part = {d.part: d.lines for d in _diff(old, new, "acknowledge (published)", "update")}
    assert by_part["subject"] == ()
    assert by_part["text"][:2] == ("--- acknowledge (published) · text", "+++ update · text")
    assert [line for line in by_part["text"] if line[:1] in "+-" and line[:3] not in
            ("---", "+++")] == ["-We are looking.", "+We found the cause."]


def test_a_part_only_one_side_has_is_all_added() -> None:
    [diff] = _diff({}, {"text": "new"}, "a", "b")
    assert diff.lines[-1] == "+new"


def test_substitutions_fill_in_one_pass_longest_key_first() -> None:
    subs = {"%first_name%": "%first_name.html%", "%first_name.html%": "Alex"}
    assert apply_substitutions("Hi %first_name% / %first_name.html%", subs) == (
        "Hi %first_name.html% / Alex")  # values are not scanned again
