"""The listening receivers' checks without a server: SendGrid's ECDSA signature (with the test
vector SendGrid publishes in sendgrid-python's ``test/unit/test_eventwebhook.py``), the HMAC of
Zendesk and ours, basic auth, the replay window, CSAT tokens, quoted-reply stripping."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from crisiscomms.reactions import signatures as sig
from crisiscomms.reactions.sources import csat
from crisiscomms.reactions.sources.inbound_parse import reply_key, strip_quoted
from crisiscomms.reactions.sources.tickets import candidate_refs
from crisiscomms.testing.emulators.sendgrid_events import EventSigner

# SendGrid's published vector (sendgrid-python, test/unit/test_eventwebhook.py).
SG_PUBLIC_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flp"
                 "VKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==")
SG_SIGNATURE = ("MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIq"
                "Hh89M15TluLtEZtM=")
SG_TIMESTAMP = "1600112502"
SG_PAYLOAD = (json.dumps([{
    "email": "hello@world.com", "event": "dropped", "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
    "timestamp": 1600112492}], sort_keys=True, separators=(",", ":")) + "\r\n").encode()
SG_OTHER_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJ"
                "CWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==")
SG_BAD_SIGNATURE = ("MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzo"
                    "QsbVRamr2nlxFDWYNH3j/0=")


def test_sendgrid_published_vector_verifies() -> None:
    assert sig.sendgrid_signature_valid(SG_PUBLIC_KEY, SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP)


@pytest.mark.parametrize(("key", "payload", "signature", "timestamp"), [
    (SG_OTHER_KEY, SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP),        # another account's key
    (SG_PUBLIC_KEY, b"payload", SG_SIGNATURE, SG_TIMESTAMP),       # another body
    (SG_PUBLIC_KEY, SG_PAYLOAD, SG_BAD_SIGNATURE, SG_TIMESTAMP),   # another signature
    (SG_PUBLIC_KEY, SG_PAYLOAD, SG_SIGNATURE, "timestamp"),        # another timestamp
    (SG_PUBLIC_KEY, SG_PAYLOAD.rstrip(), SG_SIGNATURE, SG_TIMESTAMP),  # CRLF dropped
    (SG_PUBLIC_KEY, SG_PAYLOAD, "not base64!", SG_TIMESTAMP),
])
def test_sendgrid_vector_refuses_any_change(key: str, payload: bytes, signature: str,
                                            timestamp: str) -> None:
    assert not sig.sendgrid_signature_valid(key, payload, signature, timestamp)


def test_sendgrid_replay_window_and_missing_parts() -> None:
    now = float(SG_TIMESTAMP) + 10
    sig.verify_sendgrid(SG_PUBLIC_KEY, SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP, max_age_s=300,
                        now=now)
    with pytest.raises(sig.SignatureError) as stale:
        sig.verify_sendgrid(SG_PUBLIC_KEY, SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP,
                            max_age_s=300, now=now + 3600)
    assert stale.value.status == 403 and "replay window" in stale.value.reason
    for key, signature, timestamp in ((None, SG_SIGNATURE, SG_TIMESTAMP),
                                      (SG_PUBLIC_KEY, None, SG_TIMESTAMP),
                                      (SG_PUBLIC_KEY, SG_SIGNATURE, None)):
        with pytest.raises(sig.SignatureError) as missing:
            sig.verify_sendgrid(key, SG_PAYLOAD, signature, timestamp, max_age_s=300, now=now)
        assert missing.value.status == 401


def test_a_malformed_public_key_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="not a base64 DER public key"):
        sig.load_sendgrid_public_key("not a key")
    assert not sig.sendgrid_signature_valid("not a key", SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP)


def test_the_emulators_signer_verifies_like_sendgrid() -> None:
    signer = EventSigner()
    body = b'[{"event":"processed"}]\r\n'
    headers = signer.headers(body, "1700000000")
    assert sig.sendgrid_signature_valid(signer.public_key, body,
                                        headers[sig.SENDGRID_SIGNATURE_HEADER], "1700000000")
    assert not sig.sendgrid_signature_valid(EventSigner().public_key, body,
                                            headers[sig.SENDGRID_SIGNATURE_HEADER],
                                            "1700000000")


def test_zendesk_hmac_iso_and_unix_timestamps() -> None:
    body = b'{"ticket":{"id":1}}'
    for stamp, now in (("2026-11-23T09:40:00Z", 1795426800.0 + 5), ("1795426800", 1795426805.0)):
        signature = sig.hmac_signature("s3cret-value", stamp, body)
        # the construction itself: base64(HMAC-SHA256(secret, timestamp + body))
        import hashlib
        import hmac

        expected = base64.b64encode(hmac.new(b"s3cret-value", stamp.encode() + body,
                                             hashlib.sha256).digest()).decode()
        assert signature == expected
        sig.verify_hmac("s3cret-value", body, signature, stamp, max_age_s=300, now=now,
                        source="Zendesk", signature_header="S", timestamp_header="T")
        with pytest.raises(sig.SignatureError) as wrong:
            sig.verify_hmac("another-secret", body, signature, stamp, max_age_s=300, now=now,
                            source="Zendesk", signature_header="S", timestamp_header="T")
        assert wrong.value.status == 403
        with pytest.raises(sig.SignatureError) as old:
            sig.verify_hmac("s3cret-value", body, signature, stamp, max_age_s=300,
                            now=now + 301, source="Zendesk", signature_header="S",
                            timestamp_header="T")
        assert old.value.status == 403


def test_basic_auth() -> None:
    good = "Basic " + base64.b64encode(b"parse:pa55word").decode()
    sig.verify_basic_auth("parse", "pa55word", good)
    bad = "Basic " + base64.b64encode(b"parse:guess").decode()
    for header, status in ((None, 401), ("Bearer x", 401), ("Basic !!!", 401), (bad, 403)):
        with pytest.raises(sig.SignatureError) as refused:
            sig.verify_basic_auth("parse", "pa55word", header)
        assert refused.value.status == status
    with pytest.raises(sig.SignatureError):
        sig.verify_basic_auth(None, None, good)


def test_csat_tokens_are_bound_to_recipient_and_secret() -> None:
    token = csat.make_token("k" * 32, incident_id=3, recipient_id=41, message_id=7)
    assert csat.read_token("k" * 32, token) == csat.CsatToken(3, 41, 7)
    forged = token.replace(".41.", ".42.")
    assert csat.read_token("k" * 32, forged) is None
    assert csat.read_token("x" * 32, token) is None
    assert csat.read_token("k" * 32, "3.41.7") is None
    assert csat.read_token("k" * 32, token + "A") is None
    assert len(token.rsplit(".", 1)[1]) >= 22  # 128 bits of MAC


def test_quoted_history_is_stripped_for_triage_only() -> None:
    reply = ("Still down for us, three hours now.\n\nOn Mon, 23 Nov 2026 at 10:12, Example "
             "Corp Status <status@example.com> wrote:\n> We're on it\n> more")
    assert strip_quoted(reply) == "Still down for us, three hours now."
    assert strip_quoted("Merci\nLe lun. 23 nov. 2026 à 10:12, Example a écrit :\n> x") == "Merci"
    assert strip_quoted("Danke\n\nAm 23.11.2026 um 10:12 schrieb Example <s@example.com>:\n"
                        "> x") == "Danke"
    assert strip_quoted("Ok\n-----Original Message-----\nFrom: x") == "Ok"
    assert strip_quoted("> only a quote") == "> only a quote"  # nothing above: keep it all


def test_reply_key_and_incident_refs() -> None:
    key = "a" * 40
    assert reply_key([f"replies+{key}@reply.example.com"], "reply.example.com") == key
    assert reply_key([f"replies+{key}@elsewhere.example"], "reply.example.com") is None
    assert reply_key([f"replies+{key.upper()}@Reply.Example.com"], None) == key
    assert reply_key(["support@example.com"], None) is None
    assert candidate_refs("Re: DRILL-OUTAGE-001 still broken", "vip, drill-outage-001") == (
        "DRILL-OUTAGE-001", "drill-outage-001")


def test_the_app_refuses_to_start_with_a_malformed_webhook_key(tmp_path: Path) -> None:
    from crisiscomms.api.listen import create_app
    from crisiscomms.core.errors import CrisisCommsError
    from crisiscomms.core.settings import Settings

    settings = Settings(_env_file=None,  # type: ignore[call-arg]
                        data_dir=tmp_path, playbooks_dir=tmp_path, templates_dir=tmp_path,
                        sendgrid_webhook_public_key="not a key")
    with pytest.raises(CrisisCommsError, match="SENDGRID_WEBHOOK_PUBLIC_KEY") as refused:
        create_app(settings)
    assert refused.value.field == "sendgrid_webhook_public_key"
