"""SendGrid Inbound Parse: a reply to one of our emails, as the multipart form SendGrid posts.

The form's fields (SendGrid's "default" mode, not raw MIME): ``from``, ``to``, ``cc``,
``subject``, ``text``, ``html``, ``headers`` (the raw header block), ``envelope`` (JSON
``{"to": [...], "from": "..."}``), ``charsets`` (JSON: the charset of each field, which may
be other than UTF-8), ``attachments`` (a count) and the attachment files. Each field is decoded
in the charset ``charsets`` names for it; attachments are counted, never stored.

Linking, in order: our Reply-To (``replies+<batch key>@<reply domain>``, set on every email
when ``Settings.reply_domain`` is: see ``channels/sendgrid_email.py``) found among the envelope
recipients or ``to``/``cc`` → the exact ledger batch, hence message, incident and locale;
then ``In-Reply-To``/``References`` → a batch whose SendGrid ``X-Message-Id`` they carry. The
author is the sender's address and the recipient is found by it.

The text is stored as sent; triage reads it without the quoted history below the reply
(``On … wrote:`` and its translations, ``>`` lines, ``-----Original Message-----``).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

import orjson

from crisiscomms.reactions.models import ReactionSource
from crisiscomms.reactions.service import ReactionIn
from crisiscomms.reactions.sources.payload import PayloadError

REPLY_LOCAL_PART = "replies"
"""The Reply-To's local part before ``+<batch key>``."""
KEY_PATTERN = re.compile(r"^" + REPLY_LOCAL_PART + r"\+([0-9a-f]{40})@(.+)$", re.IGNORECASE)
TEXT_FIELDS = ("from", "to", "cc", "subject", "text", "html", "headers", "envelope",
               "charsets", "attachments", "spam_score", "SPF", "dkim", "sender_ip")
MESSAGE_ID = re.compile(r"<([^<>@\s]+)@[^<>\s]*>")

_QUOTE_START = re.compile(
    r"^\s*(?:"
    r"On\b.{0,300}\bwrote:\s*$"                      # Gmail, Apple Mail (en)
    r"|El\b.{0,300}\bescribió:\s*$"                  # es
    r"|Le\b.{0,300}\ba écrit\s*:\s*$"               # fr
    r"|Am\b.{0,300}\bschrieb.{0,120}:\s*$"          # de
    r"|.{0,300}(?:に|、).{0,200}(?:が書きました|wrote)\s*[:：]\s*$"  # ja
    r"|-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original|元のメッセージ)\s*-{2,}\s*$"  # Outlook
    r"|_{10,}\s*$"                                   # Outlook's rule before From:
    r"|From:\s.+$"                                   # a forwarded header block
    r")",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class InboundForm:
    """The decoded fields of one Inbound Parse POST."""

    fields: dict[str, str]
    attachments: int


_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_PARAM = re.compile(r';\s*(name|filename)\*?=(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.IGNORECASE)


def parse_form(content_type: str | None, body: bytes) -> InboundForm:
    """Decode a ``multipart/form-data`` body, each text field in the charset SendGrid's
    ``charsets`` names (UTF-8 otherwise; undecodable bytes replaced, never refused);
    PayloadError naming the field when the form is unusable.

    A direct split on the boundary (RFC 7578 parts carry no transfer encoding), not the
    ``email`` package's general MIME parser, which costs several times more per reply."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise PayloadError("Inbound Parse: the body must be multipart/form-data",
                           field="content-type")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise PayloadError("Inbound Parse: the multipart boundary is missing",
                           field="content-type")
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise PayloadError("Inbound Parse: the form is not a complete multipart body",
                           field="body")
    raw: dict[str, bytes] = {}
    attachments = 0
    for chunk in chunks[1:-1]:
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise PayloadError("Inbound Parse: a form part has no headers", field="body")
        disposition = next((line for line in head.decode("latin-1").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _PARAM.finditer(disposition)}
        if "filename" in params:
            attachments += 1
            continue
        name = params.get("name")
        if name:
            raw[name.replace('\\"', '"')] = payload[:-2] if payload.endswith(b"\r\n") \
                else payload
    charsets = _charsets(raw.get("charsets"))
    fields = {name: _decode(value, charsets.get(name)) for name, value in raw.items()}
    return InboundForm(fields=fields, attachments=attachments)


def _charsets(value: bytes | None) -> dict[str, str]:
    if not value:
        return {}
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise PayloadError("charsets is not JSON", field="charsets") from None
    if not isinstance(data, dict):
        raise PayloadError("charsets must be a JSON object", field="charsets")
    return {str(k): str(v) for k, v in data.items()}


def _decode(value: bytes, charset: str | None) -> str:
    try:
        return value.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return value.decode("utf-8", errors="replace")


def strip_quoted(text: str) -> str:
    """The reply above its quoted history: everything before the first line that starts
    the quote (``On … wrote:``, ``>``, ``-----Original Message-----``...)."""
    kept: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith(">") or _QUOTE_START.match(line):
            break
        kept.append(line)
    stripped = "\n".join(kept).strip()
    return stripped or text.strip()


def reply_key(addresses: list[str], reply_domain: str | None) -> str | None:
    """The batch key of our Reply-To among ``addresses`` (only under ``reply_domain`` when
    one is configured)."""
    for address in addresses:
        match = KEY_PATTERN.match(address.strip())
        if match is None:
            continue
        if reply_domain and match.group(2).lower() != reply_domain.lower():
            continue
        return match.group(1).lower()
    return None


def to_reaction(form: InboundForm, *, reply_domain: str | None) -> ReactionIn:
    """The reaction of one reply; PayloadError naming the field when ``from`` is unusable."""
    fields = form.fields
    sender = fields.get("from", "").strip()
    if not sender:
        raise PayloadError("from is missing", field="from")
    pairs = getaddresses([sender])
    name, address = pairs[0] if pairs else ("", "")
    if "@" not in address:
        raise PayloadError("from has no email address", field="from")
    headers = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(
        fields.get("headers", ""))
    recipients = _envelope_to(fields.get("envelope"))
    recipients += [a for _, a in getaddresses([fields.get("to", ""), fields.get("cc", "")])]
    key = reply_key(recipients, reply_domain)
    threads = " ".join(str(headers.get(h, "")) for h in ("In-Reply-To", "References"))
    provider_ids: list[str] = []
    for local in MESSAGE_ID.findall(threads):
        provider_ids.append(local)
        if "." in local:
            provider_ids.append(local.split(".", 1)[0])
    text = fields.get("text") or _html_text(fields.get("html", ""))
    subject = fields.get("subject", "")
    message_id = str(headers.get("Message-ID", "") or "").strip()
    source_id = message_id or "sha256:" + hashlib.sha256(
        "\x1f".join([address, subject, fields.get("headers", ""), text]).encode(
            "utf-8", "surrogatepass")).hexdigest()
    received_at = None
    if headers.get("Date"):
        try:
            received_at = parsedate_to_datetime(str(headers["Date"]))
            if received_at.tzinfo is None:
                received_at = None
        except (TypeError, ValueError, IndexError):
            received_at = None
    return ReactionIn(
        source=ReactionSource.email_reply, source_id=source_id[:255], author=address.lower(),
        author_name=name or None, text=text, triage_text=strip_quoted(text),
        received_at=received_at, delivery_key=key, provider_ids=tuple(dict.fromkeys(
            provider_ids)), recipient_address=address, open_incident=False)


def _envelope_to(value: str | None) -> list[str]:
    if not value:
        return []
    try:
        data: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise PayloadError("envelope is not JSON", field="envelope") from None
    to = data.get("to") if isinstance(data, dict) else None
    if isinstance(to, str):
        return [to]
    return [str(a) for a in to] if isinstance(to, list) else []


_TAG = re.compile(r"<[^>]*>")


def _html_text(html: str) -> str:
    """A crude text of an HTML-only reply (for triage and storage when ``text`` is empty)."""
    import html as html_lib

    return html_lib.unescape(_TAG.sub(" ", html)).strip()
