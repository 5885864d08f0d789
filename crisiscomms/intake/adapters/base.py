"""What every adapter shares: reading a body into its pydantic model with errors that name the
field (``alerts[0].startsAt``), the text rule for the sender's words, times, partial fact models.

A body that is not JSON is a 400 naming ``body``; a body that is JSON but not the sender's shape
is a 422 whose ``field`` is the first wrong field's path and whose ``problems`` are every wrong
field (at most :data:`MAX_PROBLEMS`). Messages quote neither the body nor a value from it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from crisiscomms.core.errors import IntakeError
from crisiscomms.core.text import clean_text, printable
from crisiscomms.incident.facts import clean_facts

M = TypeVar("M", bound=BaseModel)
MAX_PROBLEMS = 20
SUMMARY_MAX = 2000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
"""Alertmanager's and Grafana's ``endsAt`` of an alert still firing (Go's zero time)."""


def _text(value: str) -> str:
    if value.isascii() and value.isprintable():  # the common case, without the regexes
        return value
    return clean_text(value)


def _line(value: str) -> str:
    if value.isascii() and value.isprintable():
        return value
    return clean_text(value, single_line=True)


Text = Annotated[str, AfterValidator(_text)]
"""The sender's words (a summary, an annotation): the text rule of :mod:`crisiscomms.core.text`
(no control characters, no bidi overrides), so what the PR lead reads is what was sent."""
Line = Annotated[str, AfterValidator(_line)]
"""One line under the text rule (a label value, an id)."""
Labels = Annotated[dict[Line, Line], Field(max_length=128)]


class Payload(BaseModel):
    """A sender's body: unknown fields are ignored (senders add fields over time), strings are
    stripped."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)


def facts_text_rule(value: Any) -> Any:
    """A ``mode="before"`` validator's body for a facts-shaped field (our events' ``facts``, a
    recall's ``product``): the text rule of fact sheets (:func:`clean_facts`), its first
    refusal as the field's error."""
    if not isinstance(value, dict):
        return value
    cleaned, problems = clean_facts(value)
    if problems:
        raise ValueError(str(problems[0]))
    return cleaned


def examples(*shown: dict[str, Any]) -> ConfigDict:
    """A model's config carrying realistic bodies (the OpenAPI's examples)."""
    return ConfigDict(json_schema_extra={"examples": list(shown)})


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("alerts", 0, "startsAt")`` → ``alerts[0].startsAt``; the body itself is ``body``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = printable(str(part))[:80]
            out += f".{text}" if out and _NAME.match(text) else (
                text if not out else f"[{text!r}]")
    return out or "body"


def payload_error(exc: ValidationError, *, prefix: tuple[int | str, ...] = ()) -> IntakeError:
    """The 400 (not JSON) or 422 (each wrong field, by path) of a failed validation."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    for err in errors:
        if err["type"] == "json_invalid":
            reason = f"is not JSON ({err['msg'].removeprefix('Invalid JSON: ')})"
            return IntakeError(f"body: {reason}", status=400, field="body", reason=reason)
    problems = []
    for err in errors[:MAX_PROBLEMS]:
        path = field_path(prefix + tuple(err["loc"]))
        problems.append(IntakeError(f"{path}: {err['msg']}", status=422, field=path,
                                    reason=err["msg"]))
    message = "; ".join(str(p) for p in problems)
    if len(errors) > MAX_PROBLEMS:
        message += f"; and {len(errors) - MAX_PROBLEMS} more"
    return IntakeError(message, status=422, field=problems[0].field if problems else "body",
                       problems=problems)


def parse_json(model: type[M], body: bytes) -> M:
    """``body`` read into ``model`` in one pass (pydantic's JSON parser); IntakeError 400/422."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise payload_error(exc) from None


def validate(model: type[M], data: Any, *, at: tuple[int | str, ...]) -> M:
    """``data`` (part of an already parsed body, found at ``at``) read into ``model``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise payload_error(exc, prefix=at) from None


def ended(moment: datetime | None) -> datetime | None:
    """``endsAt`` as an end: None for Go's zero time (still firing) or no time."""
    if moment is None or moment <= GO_ZERO_TIME:
        return None
    return moment


def summary_of(*candidates: str | None) -> str:
    """The first non-empty of the sender's words, at most :data:`SUMMARY_MAX` characters."""
    for text in candidates:
        if text:
            return text[:SUMMARY_MAX]
    return ""


def partial_model(model: type[BaseModel], name: str, *, exclude: frozenset[str] = frozenset(),
                  doc: str = "") -> type[BaseModel]:
    """``model`` with every field optional (None) and the same types and limits, unknown keys
    refused: what a sender may say of some of a model's fields (a fact sheet, a recall notice)
    before the playbook's rules complete them. The complete model checks the whole later."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in exclude:
            continue
        optional = FieldInfo.merge_field_infos(info, default=None, default_factory=None)
        annotation: Any = info.annotation
        optional.annotation = annotation | None
        fields[field_name] = (annotation | None, optional)
    partial: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True),
        __doc__=doc, **fields)
    return partial
