"""Reading untrusted webhook payloads: every refusal names the field at fault.

A receiver answers a :class:`PayloadError` with 400 and ``{"message", "field"}``, and stores
nothing of that request: a provider that sent a malformed batch learns what to fix, and half a
batch is never kept (it would be sent again whole).
"""

from __future__ import annotations

from typing import Any

import orjson

from crisiscomms.core.errors import CrisisCommsError


class PayloadError(CrisisCommsError):
    """A malformed webhook payload; ``field`` names where (``[3].sg_event_id``)."""


def parse_json(body: bytes, *, what: str) -> Any:
    """The JSON of a body; PayloadError (field ``body``) when it is not JSON in UTF-8."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PayloadError(f"{what}: the body is not JSON", field="body") from None


def text_field(data: dict[str, Any], name: str, *, where: str, required: bool = True,
               max_length: int | None = None) -> str | None:
    """A string (or number, as text) field; PayloadError naming ``where + name``."""
    value = data.get(name)
    path = f"{where}{name}" if where else name
    if value is None or value == "":
        if required:
            raise PayloadError(f"{path} is missing", field=path)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"{path} must be a string", field=path)
    text = str(value)
    if max_length is not None and len(text) > max_length:
        raise PayloadError(f"{path} is longer than {max_length} characters", field=path)
    return text


def object_field(data: dict[str, Any], name: str, *, where: str = "") -> dict[str, Any]:
    value = data.get(name)
    path = f"{where}{name}"
    if not isinstance(value, dict):
        raise PayloadError(f"{path} must be an object", field=path)
    return value
