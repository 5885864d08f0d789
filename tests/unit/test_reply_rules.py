"""Reply rule matching (casefolded cues at word boundaries) and the reply's locale."""

from __future__ import annotations

from repo_paths import PROJECT_ROOT

from crisiscomms.playbook.listening import ReplyRule
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.reactions.models import Reaction, ReactionSource
from crisiscomms.reactions.replies import RuleMatcher, cue_pattern, reply_key, reply_locale

ETA = ReplyRule(id="eta", cues={"en": ("when will", "eta"), "de": ("wie lange",),
                                "ja": ("いつ復旧",)})
REFUND = ReplyRule(id="refund", cues={"en": ("refund",)})


def test_cues_match_casefolded_whole_words_and_any_spacing() -> None:
    assert cue_pattern("when will").search("WHEN   WILL it be back?".casefold())
    assert cue_pattern("eta").search("any eta?")
    assert not cue_pattern("eta").search("the beta is down")
    assert not cue_pattern("eta").search("etas")
    assert cue_pattern("Straße").search("die strasse".casefold())  # ß casefolds to ss


def test_a_cue_without_word_boundaries_in_its_script_matches_inside_a_sentence() -> None:
    assert cue_pattern("いつ復旧").search("サービスはいつ復旧しますか？")


def test_first_rule_wins_and_the_cue_locale_is_reported() -> None:
    matcher = RuleMatcher.of([ETA, REFUND])
    assert matcher.match("When will I get a refund?") is not None
    rule, loc = matcher.match("When will I get a refund?") or (None, None)
    assert rule is ETA and loc == "en"
    found = matcher.match("Wie lange noch?")
    assert found is not None and found[1] == "de"
    assert matcher.match("I want a REFUND")[0] is REFUND  # type: ignore[index]
    assert matcher.match("thanks for the update") is None
    assert matcher.match("") is None


def test_the_reactions_own_locale_is_tried_first() -> None:
    both = ReplyRule(id="eta", cues={"en": ("eta",), "es": ("eta",)})
    found = RuleMatcher.of([both]).match("eta?", ["es"])
    assert found is not None and found[1] == "es"


def test_reply_locale_prefers_the_message_then_the_language_then_the_cue() -> None:
    playbook = load_playbook("outage", PROJECT_ROOT / "playbooks")

    def reaction(locale: str | None, language: str | None) -> Reaction:
        return Reaction(source=ReactionSource.x_mention, source_id="1", author="@a", text="",
                        locale=locale, language=language)

    assert reply_locale(reaction("fr-CA", "en"), playbook, "de") == "fr"
    assert reply_locale(reaction(None, "ja"), playbook, "de") == "ja"
    assert reply_locale(reaction(None, "pt"), playbook, "de") == "de"
    assert reply_locale(reaction(None, None), playbook, "pt") == "en"


def test_the_reply_key_is_per_incident_source_and_author() -> None:
    key = reply_key("INC-1", "x_mention", "@Ann")
    assert key == reply_key("INC-1", "x_mention", "@ann")  # handles are case-insensitive
    assert key != reply_key("INC-1", "x_reply", "@ann")
    assert key != reply_key("INC-2", "x_mention", "@ann")
    assert len(key) == 40
