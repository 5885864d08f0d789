"""Inbound Parse forms as SendGrid posts them: fields in their own charsets, attachments
counted, our Reply-To's batch key and the thread's Message-IDs read back, bad forms named."""

from __future__ import annotations

import pytest

from crisiscomms.reactions.sources.inbound_parse import parse_form, to_reaction
from crisiscomms.reactions.sources.payload import PayloadError
from crisiscomms.testing.emulators.sendgrid_events import inbound_reply

KEY = "0123456789abcdef0123456789abcdef01234567"


def test_a_latin1_reply_with_an_attachment() -> None:
    body, headers = inbound_reply(
        from_address="Zoë@Example.com", from_name="Zoë", text="Ça ne marche toujours pas",
        to_address=f"replies+{KEY}@reply.example.com", charset="iso-8859-1",
        in_reply_to="<XMSG42.filter-7@ismtpd0001.sendgrid.net>",
        attachments={"a.png": b"\x89PNG\r\n--not-a-boundary\r\n"}, user="u", password="p")
    assert "Ç".encode("iso-8859-1") in body and "Ç".encode() not in body  # really Latin-1
    form = parse_form(headers["Content-Type"], body)
    assert form.attachments == 1
    assert form.fields["text"] == "Ça ne marche toujours pas"
    item = to_reaction(form, reply_domain="reply.example.com")
    assert item.delivery_key == KEY and item.author == "zoë@example.com"
    assert item.author_name == "Zoë"
    assert item.provider_ids == ("XMSG42.filter-7", "XMSG42")
    assert item.source_id.startswith("<") and item.recipient_address == "Zoë@Example.com"


def test_a_quoted_boundary_and_an_html_only_reply() -> None:
    body = (b'--b"x\r\nContent-Disposition: form-data; name="from"\r\n\r\nann@example.com\r\n'
            b'--b"x\r\nContent-Disposition: form-data; name="html"\r\n\r\n'
            b"<p>Still <b>down</b> &amp; slow</p>\r\n--b\"x--\r\n").replace(b'b"x', b"bx")
    form = parse_form('multipart/form-data; boundary="bx"', body)
    item = to_reaction(form, reply_domain=None)
    assert item.text == "Still  down  & slow"
    assert item.source_id.startswith("sha256:") and item.delivery_key is None


@pytest.mark.parametrize(("content_type", "body", "field"), [
    ("application/json", b"{}", "content-type"),
    ("multipart/form-data", b"", "content-type"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data; "
     b'name="from"\r\n\r\na@b.example\r\n', "body"),  # no closing boundary
    ("multipart/form-data; boundary=zz", b"--zz\r\nno headers--zz--\r\n", "body"),
])
def test_unusable_forms_name_the_field(content_type: str, body: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_form(content_type, body)
    assert refused.value.field == field


def test_a_form_without_a_sender_is_refused() -> None:
    body = b'--zz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--zz--\r\n'
    with pytest.raises(PayloadError) as refused:
        to_reaction(parse_form("multipart/form-data; boundary=zz", body), reply_domain=None)
    assert refused.value.field == "from"
