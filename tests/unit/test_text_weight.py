"""X weighted length: the count X applies against the 280 limit."""

from __future__ import annotations

import pytest

from crisiscomms.render.text_weight import X_MAX_WEIGHTED_LENGTH, x_weighted_length


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param("Service restored.", 17, id="ascii"),
        pytest.param("Café déjà vu", 12, id="latin-accents"),
        pytest.param("e\u0301", 1, id="combining-accent-nfc"),
        pytest.param("“quoted” — ok", 13, id="general-punctuation-weight-1"),
        pytest.param("wait…", 6, id="ellipsis-u2026-weighs-2"),
        pytest.param("https://status.example.com/incidents/12345?utm=x", 23, id="url"),
        pytest.param("See https://a.example/x.", 4 + 23 + 1, id="url-trailing-period"),
        pytest.param("http://a.io and https://b.io", 23 + 5 + 23, id="two-urls"),
        pytest.param("障害が発生しています", 20, id="cjk"),
        pytest.param("한국어", 6, id="hangul"),
        pytest.param("😀", 2, id="emoji"),
        pytest.param("👍🏽", 2, id="emoji-skin-tone"),
        pytest.param("👨\u200d👩\u200d👧", 2, id="emoji-zwj-family"),
        pytest.param("🇫🇷", 2, id="flag"),
        pytest.param("1️⃣", 2, id="keycap"),
        pytest.param("☀️ up", 5, id="emoji-variation-selector"),
    ],
)
def test_weighted_length(text: str, expected: int) -> None:
    assert x_weighted_length(text) == expected


def test_boundary_280_281() -> None:
    assert x_weighted_length("a" * 280) == X_MAX_WEIGHTED_LENGTH
    assert x_weighted_length("a" * 281) == X_MAX_WEIGHTED_LENGTH + 1
    assert x_weighted_length("語" * 140) == X_MAX_WEIGHTED_LENGTH
    assert x_weighted_length("語" * 140 + "a") == X_MAX_WEIGHTED_LENGTH + 1


def test_long_url_counts_23_at_the_boundary() -> None:
    url = "https://status.example.com/" + "x" * 200
    text = "a" * (280 - 24) + " " + url
    assert x_weighted_length(text) == 280
    assert x_weighted_length(text + "!") == X_MAX_WEIGHTED_LENGTH + 1
