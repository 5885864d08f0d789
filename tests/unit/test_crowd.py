"""The drill's reacting crowd (issue 11): seeded, in its proportions, every item labelled."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from crisiscomms.testing.crowd import (
    CSAT,
    EMAIL_REPLY,
    EVENT,
    NEEDS_HUMAN_KINDS,
    PATHS,
    SOURCES,
    TICKET,
    X_MENTION,
    X_REPLY,
    BatchTarget,
    Crowd,
    CrowdMix,
    PostTarget,
    Published,
    _texts,
    event_batches,
    label_counts,
)

LOCALES = ("en", "es", "fr", "de", "ja")


def published(*, posts: bool = True, batches: bool = True) -> Published:
    return Published(
        incident_id=7, incident_ref="INC-CROWD-1",
        posts=tuple(PostTarget(str(10**18 + i), 10 + i, 20 + i, loc)
                    for i, loc in enumerate(LOCALES)) if posts else (),
        batches=tuple(BatchTarget(30 + i, 40 + i, f"key-{loc}", f"sg{i}", loc, "Disruption",
                                  tuple((r, f"r{r}@example.com", f"Name {r}")
                                        for r in range(100 * i, 100 * i + 50)))
                      for i, loc in enumerate(LOCALES)) if batches else (),
        our_address="status@example.com")


def shares(values: list[str]) -> dict[str, float]:
    counts = Counter(values)
    return {k: v / len(values) for k, v in counts.items()}


def test_the_same_seed_draws_the_same_crowd_and_another_seed_another() -> None:
    first = Crowd(published(), seed=3).generate(500)
    assert first == Crowd(published(), seed=3).generate(500)
    assert first != Crowd(published(), seed=4).generate(500)
    assert [i.n for i in first] == list(range(500))
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(first))


def test_sources_locales_and_kinds_follow_the_mix() -> None:
    mix = CrowdMix()
    items = Crowd(published(), seed=1, mix=mix).generate(5000)
    total = sum(mix.sources.values())
    for source, share in shares([i.source for i in items]).items():
        assert share == pytest.approx(mix.sources[source] / total, abs=0.025), source
    assert set(i.source for i in items) == set(SOURCES)
    texts = [i for i in items if i.label is not None]
    by_locale = shares([i.locale for i in texts])
    assert set(by_locale) == set(LOCALES)
    for locale, share in by_locale.items():
        assert share == pytest.approx(mix.locales[locale], abs=0.03), locale
    by_kind = shares([i.label.kind for i in texts if i.label is not None])
    for kind, share in by_kind.items():
        assert share == pytest.approx(mix.kinds[kind], abs=0.025), kind
    assert by_kind["complaint_implicit"] > by_kind["complaint"]  # what a lexicon misses


def test_every_text_is_labelled_as_its_kind_says() -> None:
    labels, _ = _texts()
    items = Crowd(published(), seed=2).generate(3000)
    for item in items:
        if item.source == EVENT:
            assert item.label is None and item.text == ""
            continue
        label = item.label
        assert label is not None
        assert label.sentiment == labels[label.kind].sentiment
        assert label.needs_human == (label.kind in NEEDS_HUMAN_KINDS), item
        assert label.sentiment in ("negative", "neutral", "positive")
        if item.source == CSAT:
            assert item.rating is not None and 1 <= item.rating <= 5
            assert (item.rating <= 2) == (label.sentiment == "negative")
            assert item.payload == {"rating": str(item.rating), "comment": item.text}
        else:
            assert item.text.strip()
    counts = label_counts(items)
    assert counts[EVENT]["needs_human"] == 0 and counts[X_REPLY]["needs_human"] > 0


def test_the_texts_cover_every_locale_and_kind() -> None:
    labels, texts = _texts()
    assert set(texts) == set(LOCALES)
    for locale in LOCALES:
        assert set(texts[locale]) == set(labels), locale
    assert "still waiting {hours} hours" in texts["en"]["complaint_implicit"]
    assert "why is nobody answering?" in texts["en"]["complaint_implicit"]
    assert "when will it be fixed?" in texts["en"]["question"]


def test_reactions_answer_the_message_of_their_locale() -> None:
    pub = published()
    post_of = {p.locale: p for p in pub.posts}
    batch_of = {b.locale: b for b in pub.batches}
    items = Crowd(pub, seed=5).generate(2000)
    deep = [i for i in items if i.source == X_REPLY and i.reply_to_item is not None]
    assert deep
    for item in items:
        assert item.expected.incident_id == 7
        if item.source == X_REPLY:
            assert item.path is None
            assert item.expected.message_id == post_of[item.locale].message_id
            if item.reply_to_item is not None:
                assert items[item.reply_to_item].source == X_REPLY
                assert items[item.reply_to_item].locale == item.locale
                assert item.reply_to_item < item.n
        elif item.source == X_MENTION:
            assert item.expected.message_id is None and item.author.startswith("@")
        elif item.source in (EMAIL_REPLY, CSAT, EVENT):
            batch = batch_of[item.locale]
            assert item.expected.message_id == batch.message_id
            assert item.recipient_id is not None
            assert any(r[0] == item.recipient_id and r[1] == item.author
                       for r in batch.recipients)
        elif item.source == TICKET:
            assert item.path in (PATHS["zendesk"], PATHS["freshdesk"])
    reply = next(i for i in items if i.source == EMAIL_REPLY)
    assert reply.payload is not None and reply.path == "/v1/sendgrid/inbound"
    assert f"In-Reply-To: <sg{LOCALES.index(reply.locale)}.{reply.recipient_id}@" \
        in reply.payload["headers"]
    assert reply.payload["text"] == reply.text and reply.payload["to"] == "status@example.com"


def test_events_are_sendgrid_shaped_and_some_are_delivered_twice() -> None:
    items = Crowd(published(), seed=6, mix=CrowdMix(event_redelivery_share=0.1)).generate(3000)
    events = [i for i in items if i.source == EVENT]
    assert {e.payload["event"] for e in events if e.payload} >= {
        "delivered", "open", "bounce", "spamreport", "unsubscribe"}
    repeats = [e for e in events if e.repeat_of is not None]
    assert repeats
    for event in repeats:
        assert event.payload == items[event.repeat_of].payload
    ids = [e.payload["sg_event_id"] for e in events if e.payload]
    assert len(set(ids)) == len(events) - len(repeats)
    for event in events:
        assert event.payload is not None
        assert event.payload["crisiscomms_key"].startswith("key-")
        assert event.payload["crisiscomms_recipient"] == str(event.recipient_id)
    arrays = list(event_batches(items, size=100))
    assert [len(a) for a in arrays[:-1]] == [100] * (len(arrays) - 1)
    assert sum(map(len, arrays)) == len(events)


def test_without_email_only_x_reacts_and_without_posts_only_mentions_on_x() -> None:
    only_x = Crowd(published(batches=False), seed=1).generate(300)
    assert {i.source for i in only_x} == {X_REPLY, X_MENTION}
    no_posts = Crowd(published(posts=False), seed=1).generate(300)
    assert X_REPLY not in {i.source for i in no_posts}
    with pytest.raises(ValueError, match="nothing to draw"):
        Crowd(published(posts=False, batches=False), seed=1,
              mix=CrowdMix(sources={X_REPLY: 1.0}))


def test_vips_markup_and_the_csat_token() -> None:
    crowd = Crowd(published(), seed=8, mix=CrowdMix(vip_share=0.2, markup_share=0.5),
                  vip=("@bigcustomer", "cto@big.example"),
                  csat_token=lambda rid, mid: f"t{rid}-{mid}")
    items = crowd.generate(1000)
    vips = [i for i in items if i.label is not None and "vip" in i.label.reasons]
    assert vips and all(i.author in ("@bigcustomer", "cto@big.example") for i in vips)
    assert all(i.label is not None and i.label.needs_human for i in vips)
    assert any("<script>" in i.text or "\u202e" in i.text for i in items)
    csat = [i for i in items if i.source == CSAT]
    assert csat and all(i.path == f"/v1/csat/t{i.recipient_id}-{i.expected.message_id}"
                        for i in csat)
    assert all(i.path == "/v1/csat/{token}"
               for i in Crowd(published(), seed=8).generate(500) if i.source == CSAT)
