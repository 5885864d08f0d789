"""Who sent an event: Standard Webhooks, bearer tokens, PagerDuty v3 and Grafana signatures.

Every refusal is a 401 naming the header at fault, and its message never repeats a key, a token
or a signature."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisiscomms.core.errors import IntakeError
from crisiscomms.intake.signatures import (
    AUTHORIZATION,
    GRAFANA_SIGNATURE,
    GRAFANA_TIMESTAMP,
    PAGERDUTY_SIGNATURE,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    new_secret,
    new_token,
    secret_key,
    sign_grafana,
    sign_pagerduty,
    sign_standard,
    verify_bearer,
    verify_grafana,
    verify_pagerduty,
    verify_standard,
)

# The Standard Webhooks specification's published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_764_572_400.0
WINDOW = 300
BODY = b'{"playbook": "outage", "dedup_key": "k1"}'
KEY = new_secret()
OLD_KEY = new_secret()


def standard(body: bytes = BODY, *, key: str = KEY, msg_id: str = "evt_1",
             ts: float = NOW) -> dict[str, str]:
    return {WEBHOOK_ID: msg_id, WEBHOOK_TIMESTAMP: str(int(ts)),
            WEBHOOK_SIGNATURE: sign_standard(key, msg_id, int(ts), body)}


def refused(call: object, *secrets: str) -> IntakeError:
    """The IntakeError a check raised; its text holds no key and no signature."""
    with pytest.raises(IntakeError) as info:
        call()  # type: ignore[operator]
    error = info.value
    assert error.status == 401
    for secret in secrets:
        assert secret not in str(error)
        assert secret not in repr(error.as_dict())
    return error


def test_the_spec_test_vector() -> None:
    assert sign_standard(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    headers = {WEBHOOK_ID: SPEC_ID, WEBHOOK_TIMESTAMP: str(SPEC_TS),
               WEBHOOK_SIGNATURE: SPEC_SIGNATURE}
    assert verify_standard(headers, SPEC_BODY, [SPEC_SECRET], now=SPEC_TS, window_s=WINDOW) \
        == SPEC_ID


def test_a_valid_request_gives_its_id_whatever_the_header_case() -> None:
    headers = {k.title(): v for k, v in standard().items()}  # Webhook-Id, ...
    assert verify_standard(headers, BODY, [KEY], now=NOW, window_s=WINDOW) == "evt_1"


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda h, b: (h, b[:-1] + b"]"), WEBHOOK_SIGNATURE, "no key matched"),
    (lambda h, b: (standard(b, key=new_secret()), b), WEBHOOK_SIGNATURE, "no key matched"),
    (lambda h, b: ({**h, WEBHOOK_ID: "evt_2"}, b), WEBHOOK_SIGNATURE, "no key matched"),
    (lambda h, b: (standard(b, ts=NOW - WINDOW - 1), b), WEBHOOK_TIMESTAMP, "expired"),
    (lambda h, b: (standard(b, ts=NOW + WINDOW + 1), b), WEBHOOK_TIMESTAMP, "future"),
    (lambda h, b: ({**h, WEBHOOK_TIMESTAMP: "yesterday"}, b), WEBHOOK_TIMESTAMP, "malformed"),
    (lambda h, b: ({**h, WEBHOOK_TIMESTAMP: str(NOW)}, b), WEBHOOK_TIMESTAMP, "malformed"),
    (lambda h, b: ({**h, WEBHOOK_SIGNATURE: "v2,abc"}, b), WEBHOOK_SIGNATURE, "malformed"),
    (lambda h, b: ({**h, WEBHOOK_SIGNATURE: "v1,%%%"}, b), WEBHOOK_SIGNATURE, "malformed"),
    (lambda h, b: ({**h, WEBHOOK_SIGNATURE: "v1,a " * 17}, b), WEBHOOK_SIGNATURE, "malformed"),
    (lambda h, b: ({**h, WEBHOOK_ID: "x" * 129}, b), WEBHOOK_ID, "malformed"),
    (lambda h, b: ({**h, WEBHOOK_ID: "two words"}, b), WEBHOOK_ID, "malformed"),
    *[(lambda h, b, n=name: ({k: v for k, v in h.items() if k != n}, b), name, "missing")
      for name in (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)],
])
def test_standard_refusals_name_the_header(change: object, field: str, words: str) -> None:
    headers, body = change(standard(), BODY)  # type: ignore[operator]
    error = refused(lambda: verify_standard(headers, body, [KEY], now=NOW, window_s=WINDOW),
                    KEY, headers.get(WEBHOOK_SIGNATURE, "").partition(",")[2] or KEY)
    assert error.field == field
    assert words in str(error)


def test_the_window_edges_are_inside() -> None:
    for ts in (NOW - WINDOW, NOW + WINDOW):
        assert verify_standard(standard(ts=ts), BODY, [KEY], now=NOW, window_s=WINDOW)


def test_rotation_every_key_of_the_source_is_tried() -> None:
    old_signed = standard(key=OLD_KEY)
    assert verify_standard(old_signed, BODY, [KEY, OLD_KEY], now=NOW, window_s=WINDOW)
    assert verify_standard(standard(), BODY, [KEY, OLD_KEY], now=NOW, window_s=WINDOW)
    refused(lambda: verify_standard(old_signed, BODY, [KEY], now=NOW, window_s=WINDOW), KEY)


def test_a_sender_signing_with_both_keys_verifies_with_either() -> None:
    both = standard()
    both[WEBHOOK_SIGNATURE] = " ".join((sign_standard(OLD_KEY, "evt_1", int(NOW), BODY),
                                        "v1a,c29tZXRoaW5nIGVsc2U=", both[WEBHOOK_SIGNATURE]))
    assert verify_standard(both, BODY, [KEY], now=NOW, window_s=WINDOW) == "evt_1"
    assert verify_standard(both, BODY, [OLD_KEY], now=NOW, window_s=WINDOW) == "evt_1"


def test_no_valid_key_verifies_nothing() -> None:
    refused(lambda: verify_standard(standard(), BODY, [], now=NOW, window_s=WINDOW))
    refused(lambda: verify_standard(standard(), BODY, ["not a key"], now=NOW, window_s=WINDOW))


def test_new_secrets_are_standard_and_distinct() -> None:
    made = {new_secret() for _ in range(20)}
    assert len(made) == 20
    assert all(s.startswith("whsec_") and len(secret_key(s)) == 32 for s in made)


@pytest.mark.parametrize(("secret", "words"), [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with whsec_"),
    ("whsec_c2hvcnQ=", "24 to 64 bytes"),
    ("whsec_not base64!", "base64"),
    ("whsec_" + base64.b64encode(bytes(65)).decode(), "24 to 64 bytes"),
])
def test_malformed_secrets_are_refused_without_quoting_them(secret: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        secret_key(secret)
    assert secret not in str(info.value)


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=2048), key=st.binary(min_size=24, max_size=64),
       msg_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                      min_size=1, max_size=40),
       data=st.data())
def test_any_body_signed_with_any_key_verifies_and_no_one_byte_change_does(
        body: bytes, key: bytes, msg_id: str, data: st.DataObject) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = standard(body, key=secret, msg_id=msg_id)
    assert verify_standard(headers, body, [secret], now=NOW, window_s=WINDOW) == msg_id
    changed = bytearray(body or b"\x00")
    at = data.draw(st.integers(0, len(changed) - 1))
    changed[at] ^= data.draw(st.integers(1, 255))
    if not body:
        changed = bytearray(b"\x00")  # an empty body signed; a one-byte body posted
    refused(lambda: verify_standard(headers, bytes(changed), [secret], now=NOW,
                                    window_s=WINDOW), secret)


# --- bearer tokens ----------------------------------------------------------------------

TOKEN = new_token()


def test_bearer_tokens() -> None:
    verify_bearer({"authorization": f"Bearer {TOKEN}"}, [TOKEN])
    verify_bearer({AUTHORIZATION: f"bearer  {TOKEN} "}, ["old-token-0123456789", TOKEN])
    for headers, words in (({}, "missing"), ({AUTHORIZATION: f"Basic {TOKEN}"}, "malformed"),
                           ({AUTHORIZATION: "Bearer"}, "malformed"),
                           ({AUTHORIZATION: f"Bearer {TOKEN}x"}, "no key matched")):
        error = refused(lambda h=headers: verify_bearer(h, [TOKEN]), TOKEN)
        assert error.field == AUTHORIZATION
        assert words in str(error)


# --- PagerDuty --------------------------------------------------------------------------

PD_SECRET = "pd-" + "a1" * 30


def test_pagerduty_signature_is_hex_hmac_of_the_raw_body() -> None:
    expected = hmac.new(PD_SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign_pagerduty(PD_SECRET, BODY) == f"v1={expected}"
    verify_pagerduty({PAGERDUTY_SIGNATURE: sign_pagerduty(PD_SECRET, BODY)}, BODY, [PD_SECRET])
    other = sign_pagerduty("another-secret-0123456789", BODY)
    rotating = f"{other},{sign_pagerduty(PD_SECRET, BODY)}"
    verify_pagerduty({"x-pagerduty-signature": rotating}, BODY, [PD_SECRET])


@pytest.mark.parametrize(("value", "body", "words"), [
    (None, BODY, "missing"),
    ("v0=abc", BODY, "malformed"),
    ("v1=" + "zz" * 32, BODY, "malformed"),
    ("SIGNED", BODY + b" ", "no key matched"),
    ("OTHER", BODY, "no key matched"),
])
def test_pagerduty_refusals(value: str | None, body: bytes, words: str) -> None:
    if value == "SIGNED":
        value = sign_pagerduty(PD_SECRET, BODY)
    elif value == "OTHER":
        value = sign_pagerduty("not-the-secret-0123456789", BODY)
    headers = {} if value is None else {PAGERDUTY_SIGNATURE: value}
    error = refused(lambda: verify_pagerduty(headers, body, [PD_SECRET]), PD_SECRET,
                    (value or "v1=x")[3:])
    assert error.field == PAGERDUTY_SIGNATURE
    assert words in str(error)


# --- Grafana ----------------------------------------------------------------------------

GF_SECRET = "grafana-" + "b2" * 20


def grafana(body: bytes = BODY, ts: float = NOW, header: str = GRAFANA_TIMESTAMP,
            secret: str = GF_SECRET) -> dict[str, str]:
    return {GRAFANA_SIGNATURE: sign_grafana(secret, int(ts), body), header: str(int(ts))}


def test_grafana_signature_with_its_timestamp() -> None:
    expected = hmac.new(GF_SECRET.encode(), f"{int(NOW)}:".encode() + BODY,
                        hashlib.sha256).hexdigest()
    assert sign_grafana(GF_SECRET, int(NOW), BODY) == expected
    first = verify_grafana(grafana(), BODY, [GF_SECRET], now=NOW, window_s=WINDOW)
    again = verify_grafana(grafana(), BODY, ["other-0123456789abcdef", GF_SECRET], now=NOW,
                           window_s=WINDOW)
    later = verify_grafana(grafana(ts=NOW + 60), BODY, [GF_SECRET], now=NOW, window_s=WINDOW)
    assert first == again != later  # the same request is a replay; a repeat is not
    assert GF_SECRET not in first
    assert verify_grafana(grafana(header="X-Grafana-Alerting-Signature-Timestamp"), BODY,
                          [GF_SECRET], now=NOW, window_s=WINDOW)


@pytest.mark.parametrize(("headers", "field", "words"), [
    ({GRAFANA_SIGNATURE: sign_grafana(GF_SECRET, int(NOW), BODY)}, GRAFANA_TIMESTAMP,
     "missing"),
    (grafana(ts=NOW - WINDOW - 5), GRAFANA_TIMESTAMP, "expired"),
    ({**grafana(), GRAFANA_SIGNATURE: "abc"}, GRAFANA_SIGNATURE, "malformed"),
    (grafana(secret="grafana-other-0123456789"), GRAFANA_SIGNATURE, "no key matched"),
    (grafana(body=BODY + b"\n"), GRAFANA_SIGNATURE, "no key matched"),
])
def test_grafana_refusals(headers: dict[str, str], field: str, words: str) -> None:
    error = refused(lambda: verify_grafana(headers, BODY, [GF_SECRET], now=NOW,
                                           window_s=WINDOW),
                    GF_SECRET, headers[GRAFANA_SIGNATURE])
    assert error.field == field
    assert words in str(error)


@settings(max_examples=40, deadline=None)
@given(body=st.binary(min_size=1, max_size=2048),
       secret=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                      min_size=16, max_size=80),
       data=st.data())
def test_pagerduty_and_grafana_any_body_verifies_and_no_one_byte_change_does(
        body: bytes, secret: str, data: st.DataObject) -> None:
    changed = bytearray(body)
    changed[data.draw(st.integers(0, len(body) - 1))] ^= data.draw(st.integers(1, 255))
    pd = {PAGERDUTY_SIGNATURE: sign_pagerduty(secret, body)}
    verify_pagerduty(pd, body, [secret])
    refused(lambda: verify_pagerduty(pd, bytes(changed), [secret]), secret)
    gf = grafana(body, secret=secret)
    assert verify_grafana(gf, body, [secret], now=NOW, window_s=WINDOW)
    refused(lambda: verify_grafana(gf, bytes(changed), [secret], now=NOW, window_s=WINDOW),
            secret)
