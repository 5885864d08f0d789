"""Support tickets, as Zendesk and Freshdesk webhooks send them.

Neither help desk has a fixed webhook body: each posts the JSON its trigger (Zendesk) or
automation rule (Freshdesk) is given, built from placeholders. We accept the shapes
docs/listening.md tells admins to configure, which are the help desks' own placeholder names:

- **Zendesk** ``{"ticket": {"id", "subject", "description", "tags": [...],
  "requester": {"email", "name"}, "latest_comment": {"id", "body"}, "custom_fields":
  [{"id", "value"}], "updated_at"}}`` (a flat object without ``ticket`` is read the same way);
- **Freshdesk** ``{"freshdesk_webhook": {"ticket_id", "ticket_subject",
  "ticket_description", "ticket_tags": "a, b", "ticket_contact_email",
  "ticket_contact_name", "ticket_latest_public_comment", "ticket_cf_*"}}``.

One webhook is one reaction, its source id the desk, the ticket id and the comment id (a new
comment on the same ticket is a new reaction; the same comment posted twice is stored once).
A ticket names its incident by a reference found in the subject, a tag or a custom field
(``DRILL-OUTAGE-001``, case-insensitive); failing that it is linked to the open incident.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from crisiscomms.reactions.models import ReactionSource
from crisiscomms.reactions.service import ReactionIn
from crisiscomms.reactions.sources.payload import (
    PayloadError,
    object_field,
    parse_json,
    text_field,
)

REFERENCE = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+\b")
"""What an incident reference looks like (letters, then dash-separated parts)."""


def candidate_refs(*texts: str) -> tuple[str, ...]:
    """Every token of ``texts`` that could be an incident reference, in order."""
    found: list[str] = []
    for text in texts:
        found.extend(REFERENCE.findall(text))
    return tuple(dict.fromkeys(found))


def zendesk_reaction(body: bytes) -> ReactionIn:
    data = parse_json(body, what="Zendesk ticket")
    if not isinstance(data, dict):
        raise PayloadError("Zendesk ticket: the body must be a JSON object", field="body")
    where = "ticket."
    ticket = object_field(data, "ticket") if "ticket" in data else data
    if "ticket" not in data:
        where = ""
    ticket_id = text_field(ticket, "id", where=where, max_length=64)
    subject = text_field(ticket, "subject", where=where, required=False) or ""
    description = text_field(ticket, "description", where=where, required=False) or ""
    requester = ticket.get("requester")
    if not isinstance(requester, dict):
        raise PayloadError(f"{where}requester must be an object", field=f"{where}requester")
    author = (text_field(requester, "email", where=f"{where}requester.", required=False)
              or text_field(requester, "id", where=f"{where}requester.", max_length=320))
    name = text_field(requester, "name", where=f"{where}requester.", required=False)
    comment = ticket.get("latest_comment")
    comment_id: str | None = None
    text = description
    if comment is not None:
        if not isinstance(comment, dict):
            raise PayloadError(f"{where}latest_comment must be an object",
                               field=f"{where}latest_comment")
        comment_id = text_field(comment, "id", where=f"{where}latest_comment.", required=False)
        text = text_field(comment, "body", where=f"{where}latest_comment.",
                          required=False) or description
    tags = ticket.get("tags") or []
    if isinstance(tags, str):
        tags = tags.split()
    if not isinstance(tags, list):
        raise PayloadError(f"{where}tags must be a list", field=f"{where}tags")
    fields = ticket.get("custom_fields") or []
    if not isinstance(fields, list):
        raise PayloadError(f"{where}custom_fields must be a list", field=f"{where}custom_fields")
    values = [str(f.get("value")) for f in fields if isinstance(f, dict) and f.get("value")]
    assert ticket_id is not None and author is not None
    return ReactionIn(
        source=ReactionSource.ticket,
        source_id=_source_id("zendesk", ticket_id, comment_id, text),
        author=author, author_name=name, text=text,
        received_at=_when(ticket.get("updated_at")),
        incident_refs=candidate_refs(subject, *map(str, tags), *values),
        recipient_address=author if "@" in author else None, open_incident=True)


def freshdesk_reaction(body: bytes) -> ReactionIn:
    data = parse_json(body, what="Freshdesk ticket")
    if not isinstance(data, dict):
        raise PayloadError("Freshdesk ticket: the body must be a JSON object", field="body")
    hook = object_field(data, "freshdesk_webhook")
    where = "freshdesk_webhook."
    ticket_id = text_field(hook, "ticket_id", where=where, max_length=64)
    author = text_field(hook, "ticket_contact_email", where=where, max_length=320)
    name = text_field(hook, "ticket_contact_name", where=where, required=False)
    subject = text_field(hook, "ticket_subject", where=where, required=False) or ""
    description = text_field(hook, "ticket_description", where=where, required=False) or ""
    comment = text_field(hook, "ticket_latest_public_comment", where=where, required=False)
    tags = text_field(hook, "ticket_tags", where=where, required=False) or ""
    custom = [str(v) for k, v in hook.items() if k.startswith("ticket_cf_") and v]
    text = comment or description
    assert ticket_id is not None and author is not None
    return ReactionIn(
        source=ReactionSource.ticket,
        source_id=_source_id("freshdesk", ticket_id, None, text),
        author=author, author_name=name, text=text,
        incident_refs=candidate_refs(subject, *tags.split(","), *custom),
        recipient_address=author, open_incident=True)


def _source_id(desk: str, ticket_id: str, comment_id: str | None, text: str) -> str:
    """``desk:ticket:comment``; without a comment id (Freshdesk sends none), a digest of the
    text stands for it, so the same comment posted twice is one reaction."""
    comment = comment_id or "h" + hashlib.sha256(text.encode("utf-8", "surrogatepass")
                                                 ).hexdigest()[:16]
    return f"{desk}:{ticket_id}:{comment}"


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
