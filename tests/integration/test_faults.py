"""Providers that answer garbage or hang, through the real channel classes and the real send
loop (``delivery.sender.send_once``): garbage and hangs are retryable failures bounded by a
timeout, and never lead to a second copy (the provider is asked before anything is resent).

Exactly once is judged by what the provider recorded: the addresses of each key's
personalizations (SendGrid keeps a resent batch twice), and for X every request to post a text,
including those it refused as duplicate content (``duplicates``, ``rejected``): X never keeps a
second copy, so counting its posts could not show a resend."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.channels.x_social import XChannel
from crisiscomms.delivery.contract import (
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    PartProgress,
    RenderedMessage,
)
from crisiscomms.delivery.sender import SendPolicy, StillSending, send_once
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.testing.emulators import EmulatorPair, Faults, start_emulators

pytestmark = pytest.mark.integration

SG_KEY = "SG.faults-test-key"
X_TOKEN = "x-faults-test-token"
HANG_S = 30.0
"""How long the emulator hangs: far longer than the channel's timeout (0.5 s)."""
NO_WAIT = SendPolicy(max_attempts=6, base_delay_s=0.0, max_delay_s=0.0,
                     rate_per_s={"email": None, "x": None})


@pytest.fixture(scope="module")
def pair() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SG_KEY, x_token=X_TOKEN) as emulators:
        yield emulators


@pytest.fixture(autouse=True)
def _clean(pair: EmulatorPair) -> Iterator[None]:
    pair.reset()
    yield
    pair.reset()  # hung handlers are woken when the module fixture stops the emulators


def _facts() -> FactSheet:
    return build_fact_sheet({"incident_ref": "FAULTS-1", "organization": "Example Corp",
                             "title": "Checkout errors", "severity": "major",
                             "started_at": "2026-11-23T09:40:00+00:00"})


def email_batch(key: str, count: int = 3) -> OutboundBatch:
    parts = {"subject": "Checkout errors", "text": "Hi %first_name%, we are on it.",
             "html": "<p>Hi %first_name.html%, we are on it.</p>"}
    message = RenderedMessage(playbook="outage", stage="acknowledge", channel="email",
                              locale="en", parts=parts, content_hash="h-email")
    recipients = [OutboundRecipient(i, f"r{i}@faults.example.com",
                                    {"%first_name%": "Ada", "%first_name.html%": "Ada"})
                  for i in range(1, count + 1)]
    return OutboundBatch(key=key, batch_no=1, facts=_facts(), incident_status="investigating",
                         message=message, recipients=recipients)


def x_batch(key: str, text: str) -> OutboundBatch:
    message = RenderedMessage(playbook="outage", stage="acknowledge", channel="x", locale="en",
                              parts={"text": text}, content_hash="h-x")
    return OutboundBatch(key=key, batch_no=1, facts=_facts(), incident_status="investigating",
                         message=message)


def email_channel(pair: EmulatorPair, transport: str) -> SendGridEmailChannel:
    return SendGridEmailChannel(SG_KEY, base_url=pair.sendgrid.url, from_email="s@example.com",
                                from_name="Status", timeout_s=0.5, transport=transport)


def x_channel(pair: EmulatorPair) -> XChannel:
    return XChannel(bearer_token=X_TOKEN, base_url=pair.x.url, timeout_s=0.5)


# -- garbage answers --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["httpx", "sdk"])
def test_email_garbage_answers_end_sent_exactly_once(pair: EmulatorPair, transport: str) -> None:
    """Every answer is garbage (non-JSON 202 or a truncated response): each batch ends sent,
    directly or after asking the provider, and the provider holds each key's recipients once."""
    pair.sendgrid.set_faults(Faults(garbage_rate=1.0, seed=11))
    channel = email_channel(pair, transport)
    everyone = [r.address for r in email_batch("any").recipients]
    for n in range(6):
        key = f"garbage-{transport}-{n}"
        result, _ = send_once(channel, email_batch(key), NO_WAIT)
        assert result.outcome is Outcome.sent, result.reason
        received = pair.sendgrid.received(key)
        assert sorted(r["to"] for r in received) == everyone  # each recipient exactly once
        assert {r["text"] for r in received} == {"Hi Ada, we are on it."}
    stats = pair.sendgrid.stats()
    assert (stats["accepted_messages"], stats["recipients"]) == (6, 6 * len(everyone))
    assert stats["duplicates"] == 0
    assert stats["dropped"].get("truncated", 0) > 0  # the ambiguous kind was exercised


def test_truncated_email_answer_is_retryable_and_ambiguous(pair: EmulatorPair) -> None:
    """Seed chosen so the first draw is a truncated response: retryable, flagged ambiguous
    (the sender must ask before resending), never a permanent failure."""
    channel = email_channel(pair, "httpx")
    for seed in range(50):
        pair.sendgrid.reset()
        pair.sendgrid.set_faults(Faults(garbage_rate=1.0, seed=seed))
        result = channel.send(email_batch(f"trunc-{seed}"))
        if pair.sendgrid.stats()["dropped"].get("truncated"):
            assert result.outcome is Outcome.retryable
            assert result.ambiguous
            assert channel.reconcile(email_batch(f"trunc-{seed}")) is True
            return
    pytest.fail("no seed drew a truncated response")


def test_x_garbage_answer_is_retryable_then_reconciled_once(pair: EmulatorPair) -> None:
    channel = x_channel(pair)
    batch = x_batch("x-garbage", "Checkout errors: we are investigating. Next update 10:30 UTC.")
    pair.x.set_faults(Faults(garbage_rate=1.0, seed=2))
    result = channel.send(batch)
    assert result.outcome is Outcome.retryable, result
    assert result.ambiguous  # the post may exist: never resent blindly
    pair.x.set_faults(Faults())
    assert channel.reconcile(batch) is True  # what send_once asks next: found, not resent
    assert [p["text"] for p in pair.x.received()] == [batch.message.parts["text"]]


def test_x_mixed_garbage_through_the_send_loop_posts_once(pair: EmulatorPair) -> None:
    channel = x_channel(pair)
    pair.x.set_faults(Faults(garbage_rate=0.5, seed=4))
    outcomes: list[object] = []
    texts = [f"Checkout errors, update {n}: we are investigating." for n in range(6)]
    for n, text in enumerate(texts):
        try:
            result, _ = send_once(channel, x_batch(f"x-mixed-{n}", text), NO_WAIT)
            outcomes.append(result.outcome)
        except StillSending:
            outcomes.append("still_sending")  # reconcile itself got garbage: asked later
    stats = pair.x.stats()
    # X was asked to post each text once: a resend would count here (and X would refuse it
    # as duplicate content, 403), even though X keeps one post per text whatever we do
    assert stats["duplicates"] == 0 and "403" not in stats["rejected"], stats
    assert sorted(p["text"] for p in pair.x.received()) == sorted(texts)  # each posted once
    assert sum(stats["dropped"].values()) > 0  # the faults were exercised
    assert Outcome.sent in outcomes
    assert all(o in (Outcome.sent, "still_sending") for o in outcomes)


# -- a provider that hangs --------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["httpx", "sdk"])
def test_hanging_sendgrid_times_out_as_retryable(pair: EmulatorPair, transport: str) -> None:
    pair.sendgrid.set_faults(Faults(timeout_rate=1.0, hang_s=HANG_S))
    channel = email_channel(pair, transport)
    started = time.monotonic()
    result, attempts = send_once(channel, email_batch(f"hang-{transport}"),
                                 SendPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0,
                                            rate_per_s={"email": None}))
    elapsed = time.monotonic() - started
    pair.sendgrid.set_faults(Faults())
    assert result.outcome is Outcome.retryable and result.ambiguous, result
    assert "did not answer" in (result.reason or "")
    assert attempts == 2  # asked the provider (key not accepted), resent, timed out again
    assert elapsed < HANG_S / 2  # bounded by the channel timeout, not by the provider
    assert not pair.sendgrid.accepted(f"hang-{transport}")


def test_hanging_x_times_out_and_stays_sending_until_x_answers(pair: EmulatorPair) -> None:
    pair.x.set_faults(Faults(timeout_rate=1.0, hang_s=HANG_S))
    channel = x_channel(pair)
    batch = x_batch("x-hang", "Checkout errors: X hangs; we are investigating.")
    started = time.monotonic()
    result = channel.send(batch)
    assert result.outcome is Outcome.retryable and result.ambiguous, result
    with pytest.raises(StillSending):  # reconcile hangs too: the row stays sending
        send_once(channel, batch, NO_WAIT)
    assert time.monotonic() - started < HANG_S / 2
    pair.x.set_faults(Faults())
    result, _ = send_once(channel, batch, NO_WAIT)  # X answers again: posted once
    assert result.outcome is Outcome.sent
    stats = pair.x.stats()
    assert stats["duplicates"] == 0 and "403" not in stats["rejected"], stats  # asked once
    assert [p["text"] for p in pair.x.received()] == [batch.message.parts["text"]]


# -- X returns t.co links: reconciliation that works as it does in production ----------------

THREAD = ("Checkout errors: we are investigating. Status: https://status.example.com/i/faults-1 "
          "(ref FAULTS-1)",
          "What is affected: card payments at https://shop.example.com/checkout. Orders are "
          "safe.",
          "Next update by 10:30 UTC on status.example.com/i/faults-1 or follow this thread.")


def thread_batch(key: str, progress: PartProgress | None = None,
                 reply_to: str | None = None) -> OutboundBatch:
    parts = {"text": THREAD[0], "text_2": THREAD[1], "text_3": THREAD[2]}
    message = RenderedMessage(playbook="outage", stage="acknowledge", channel="x", locale="en",
                              parts=parts, content_hash="h-thread")
    return OutboundBatch(key=key, batch_no=0, facts=_facts(), incident_status="investigating",
                         message=message, reply_to=reply_to, progress=progress or PartProgress())


def _each_text_posted_once(pair: EmulatorPair, texts: tuple[str, ...]) -> None:
    stats = pair.x.stats()
    assert [pair.x.key_count(t) for t in texts] == [1] * len(texts)
    assert stats["accepted_messages"] == len(texts)
    assert stats["duplicates"] == 0 and "403" not in stats["rejected"], stats


def test_x_shows_links_as_t_co_and_a_lost_post_with_a_link_is_found(pair: EmulatorPair) -> None:
    """X stores every link as a t.co link: the exact text we sent is never among our posts,
    yet the post whose answer was lost is found (t.co-aware) and not posted again."""
    channel = x_channel(pair)
    batch = x_batch("x-tco", THREAD[0])
    pair.x.set_faults(Faults(lost_response_rate=1.0))
    assert channel.send(batch).ambiguous
    pair.x.set_faults(Faults())
    ((post_id, shown),) = channel.recent_posts(5)
    assert "https://t.co/" in shown and "status.example.com" not in shown
    assert len(shown) == len(THREAD[0]) - len("https://status.example.com/i/faults-1") + 23
    assert channel.reconcile(batch) is True
    assert batch.progress.ids == [post_id]
    result, _ = send_once(channel, x_batch("x-tco-2", "Another post"), NO_WAIT)
    assert result.outcome is Outcome.sent
    assert channel.reconcile(x_batch("x-never", "Checkout errors: never posted. "
                                     "https://status.example.com/i/faults-1")) is False
    _each_text_posted_once(pair, (THREAD[0], "Another post"))


def test_x_thread_answer_lost_mid_thread_continues_without_reposting(pair: EmulatorPair) -> None:
    """The second post's answer is lost: the send loop finds it (t.co-aware, replying to the
    first), records its id and posts only the third, as a reply to the second."""
    channel = x_channel(pair)
    saved: list[tuple[str, ...]] = []
    batch = thread_batch("x-thread-lost", PartProgress(save=lambda ids: saved.append(tuple(ids))))
    # part 1 answered; part 2 accepted, its answer lost; then X answers again
    pair.x.set_faults(Faults(pass_first=1, lost_response_rate=1.0, max_faults=1))
    result, attempts = send_once(channel, batch, NO_WAIT)
    assert (result.outcome, attempts) == (Outcome.sent, 2)
    assert pair.x.stats()["dropped"] == {"lost_response": 1}
    first, second, third = batch.progress.ids
    assert result.provider_id == f"{first},{second},{third}"
    assert saved == [(first,), (first, second), (first, second, third)]
    posts = {p["id"]: p for p in pair.x.received()}
    assert (posts[second]["reply_to"], posts[third]["reply_to"]) == (first, second)
    _each_text_posted_once(pair, THREAD)


def test_x_resend_after_a_crash_mid_thread_posts_only_what_is_missing(
        pair: EmulatorPair) -> None:
    """A sender died after X accepted the second post and before its id was recorded: the
    ledger holds the first id only. Reconciliation finds the second by its reply and its
    t.co-shortened text; the resend posts the third alone."""
    channel = x_channel(pair)
    root = channel.send(x_batch("x-root", "Earlier update of FAULTS-1 https://status.example.com"))
    assert root.provider_id
    two_parts = RenderedMessage(playbook="outage", stage="acknowledge", channel="x",
                                locale="en", parts={"text": THREAD[0], "text_2": THREAD[1]},
                                content_hash="h")
    died = channel.send(OutboundBatch(key="x-died", batch_no=0, facts=_facts(),
                                      incident_status="investigating", message=two_parts,
                                      reply_to=root.provider_id))
    assert died.provider_id is not None
    first, second = died.provider_id.split(",")
    batch = thread_batch("x-died", PartProgress([first]), reply_to=root.provider_id)
    assert channel.reconcile(batch) is False  # the third post is missing
    assert batch.progress.ids == [first, second]
    assert channel.send(batch).outcome is Outcome.sent
    assert channel.reconcile(batch) is True  # every part has an id: X is not asked
    (third,) = [p for p in pair.x.received() if p["id"] == batch.progress.ids[2]]
    assert third["reply_to"] == second
    _each_text_posted_once(pair, ("Earlier update of FAULTS-1 https://status.example.com",
                                  *THREAD))


def test_x_a_part_refused_keeps_the_ids_of_those_posted(pair: EmulatorPair) -> None:
    """X refuses the second post (a server error to the last attempt): the result carries
    the first post's id, so the ledger keeps it and the retry continues after it."""
    channel = x_channel(pair)
    batch = thread_batch("x-refused")
    pair.x.set_faults(Faults(pass_first=1, error_rate=1.0, error_statuses=(503,)))
    result = channel.send(batch)
    assert result.outcome is Outcome.retryable and not result.ambiguous
    assert result.provider_id == batch.progress.ids[0]
    assert "thread stopped before post 2 of 3" in (result.reason or "")
    pair.x.set_faults(Faults())
    retry = thread_batch("x-refused", PartProgress.parse(result.provider_id))
    assert channel.send(retry).outcome is Outcome.sent
    _each_text_posted_once(pair, THREAD)


def test_x_a_thread_out_of_attempts_keeps_the_ids_reconciliation_found(
        pair: EmulatorPair) -> None:
    """Out of attempts right after reconciliation found the lost second post: the failure
    names both posts, so the ledger keeps both and the retry posts only the third."""
    channel = x_channel(pair)
    batch = thread_batch("x-out-of-attempts")
    pair.x.set_faults(Faults(pass_first=1, lost_response_rate=1.0, max_faults=1))
    once = SendPolicy(max_attempts=1, base_delay_s=0.0, max_delay_s=0.0, rate_per_s={"x": None})
    result, attempts = send_once(channel, batch, once)
    assert (result.outcome, attempts) == (Outcome.retryable, 1)
    assert result.provider_id == ",".join(batch.progress.ids)
    assert len(batch.progress.ids) == 2
    retry = thread_batch("x-out-of-attempts", PartProgress.parse(result.provider_id))
    assert channel.send(retry).outcome is Outcome.sent
    _each_text_posted_once(pair, THREAD)
