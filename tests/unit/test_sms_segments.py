"""SMS segments as carriers bill them: GSM-7 or UCS-2, single or concatenated, escapes and
surrogate pairs never split; the channel's limit and a playbook's cap refuse what costs more,
naming the count."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import PlaybookError
from crisiscomms.delivery.contract import ChannelLimits
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.render.limits import limit_problems
from crisiscomms.render.sms_segments import Encoding, sms_segments


@pytest.mark.parametrize(("text", "encoding", "units", "count"), [
    ("", Encoding.gsm7, 0, 1),
    ("a" * 160, Encoding.gsm7, 160, 1),
    ("a" * 161, Encoding.gsm7, 161, 2),
    ("a" * 306, Encoding.gsm7, 306, 2),
    ("a" * 307, Encoding.gsm7, 307, 3),
    ("€" * 80, Encoding.gsm7, 160, 1),          # extension table: escape + character
    ("€" * 81, Encoding.gsm7, 162, 2),
    ("Ça coûte 5 €", Encoding.ucs2, 12, 1),     # û is not GSM-7: the whole text is UCS-2
    ("é" * 160, Encoding.gsm7, 160, 1),         # é is
    ("a" * 70 + "á", Encoding.ucs2, 71, 2),     # one accented letter doubles the cost
    ("障" * 70, Encoding.ucs2, 70, 1),
    ("障" * 71, Encoding.ucs2, 71, 2),
    ("障" * 134, Encoding.ucs2, 134, 2),
    ("障" * 135, Encoding.ucs2, 135, 3),
    ("🚨" * 35, Encoding.ucs2, 70, 1),          # an emoji is two UTF-16 units
    ("🚨" * 36, Encoding.ucs2, 72, 2),
])
def test_encoding_units_and_segments(text: str, encoding: Encoding, units: int,
                                     count: int) -> None:
    got = sms_segments(text)
    assert (got.encoding, got.units, got.count) == (encoding, units, count)


def test_an_escape_or_a_surrogate_pair_never_straddles_two_segments() -> None:
    # 152 septets then an escape pair: 154 > 153, so the pair opens segment two
    assert sms_segments("a" * 152 + "€" + "a" * 10).count == 2
    assert sms_segments("a" * 152 + "€" + "a" * 152).count == 3  # 306 septets, yet 3
    # 66 units then an emoji: it moves whole into segment two (67 would split it)
    assert sms_segments("障" * 66 + "🚨" + "障" * 66).count == 3
    assert sms_segments("障" * 66 + "障" + "障" * 67).count == 2


def test_describe_names_encoding_count_and_what_forced_ucs2() -> None:
    text = sms_segments("São Paulo 🚨 " + "a" * 80).describe()
    assert text.startswith("2 SMS segments (UCS-2, ")
    assert "'ã'" in text and "'🚨'" in text


def test_limit_problems_name_the_segments_and_the_limit() -> None:
    limits = ChannelLimits(max_segments=2)
    assert limit_problems(limits, {"text": "a" * 306}) == []
    (problem,) = limit_problems(limits, {"text": "障" * 135})
    assert problem == ("text is 3 SMS segments (UCS-2, 135 UTF-16 units); UCS-2 because of "
                       "'障', over the limit of 2 segments")


def test_a_playbook_caps_its_sms_below_the_channels_own() -> None:
    outage = load_playbook("outage", PROJECT_ROOT / "playbooks")
    sms = CHANNEL_CLASSES["sms"]
    assert sms.limits.max_segments == 10
    capped = outage.limits_of("sms", sms.limits)
    assert capped.max_segments == outage.limits["sms"].max_segments == 3
    assert outage.limits_of("x", CHANNEL_CLASSES["x"].limits) == CHANNEL_CLASSES["x"].limits


def _playbook_with(tmp_path: Path, block: str) -> Path:
    text = (PROJECT_ROOT / "playbooks" / "outage.yaml").read_text(encoding="utf-8")
    text = text.replace("limits:\n  sms: {max_segments: 3}\n", block)
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "outage.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(("block", "message"), [
    ("limits:\n  sms: {max_segments: 11}\n", "max_segments"),
    ("limits:\n  fax: {max_segments: 2}\n", "limits names unknown channels ['fax']"),
    ("limits:\n  x: {max_segments: 2}\n", "is not a cap under the channel's own"),
    ("limits:\n  sms: {segments: 2}\n", "Extra inputs"),
])
def test_a_bad_cap_is_refused_naming_the_key(tmp_path: Path, block: str, message: str) -> None:
    folder = _playbook_with(tmp_path, block)
    with pytest.raises(PlaybookError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_playbook("outage", folder).check_channels(CHANNEL_CLASSES)


def test_lint_checks_the_sms_cap_with_the_longest_facts_in_every_locale(tmp_path: Path) -> None:
    """The shipped outage playbook capped at 1 segment: lint names each stage, locale and the
    count (the short variants of the real texts cost 2 with the longest facts)."""
    from crisiscomms.playbook.lint import lint_playbook

    folder = _playbook_with(tmp_path, "limits:\n  sms: {max_segments: 1}\n")
    problems = [p for p in lint_playbook("outage", folder, PROJECT_ROOT / "templates",
                                         CHANNEL_CLASSES) if p.channel == "sms"]
    assert {(p.message, p.locale) for p in problems} == {
        (stage, locale) for stage in ("acknowledge", "update", "resolve")
        for locale in ("en", "es", "fr", "de", "ja")}
    assert {p.facts for p in problems} >= {"longest"}
    assert all(p.field == "text" and "SMS segments" in p.text and "over the limit of 1 segment"
               in p.text for p in problems)
    # the full text was over, so was its short variant: the short is the template at fault
    assert any(p.template and p.template.endswith("sms.short.ja.j2") for p in problems)
