"""Validation of a SendGrid v3 ``/mail/send`` body, with SendGrid's error messages and fields.

`parse_mail` turns a decoded JSON body into a compact `ParsedMail` (what the emulator stores)
or raises `MailErrors` holding every problem found, each naming its field
(``personalizations.0.to.0.email``) the way SendGrid's 400 answers do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
KEY_ARG = "crisiscomms_key"
BATCH_ARG = "crisiscomms_batch"
RECIPIENT_ARG = "crisiscomms_recipient"

_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_EMAIL_RE = re.compile(r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+\.[^@\s<>(),;:\"\[\]\\.]+")
_RECIPIENT_LISTS = ("to", "cc", "bcc")


@dataclass(frozen=True, slots=True)
class MailError:
    message: str
    field: str | None
    help: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"message": self.message, "field": self.field, "help": self.help}


class MailErrors(Exception):
    """The body was refused; `errors` lists every problem found."""

    def __init__(self, errors: list[MailError], status: int = 400) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors
        self.status = status


@dataclass(frozen=True, slots=True)
class ParsedPersonalization:
    """One personalization as stored: recipients, substitutions, keys. No rendered text."""

    recipients: str | tuple[str, ...]
    """The ``to`` addresses: one string (the common case, no tuple to store) or a tuple."""
    subject: str | None
    sub_keys: tuple[str, ...]
    """Substitution keys; one tuple object shared by the request's personalizations."""
    sub_values: tuple[str, ...]
    key: str | None
    batch: str | None
    recipient: str | None = None
    """Our ``crisiscomms_recipient`` custom arg (the Event Webhook sends it back)."""

    @property
    def to(self) -> tuple[str, ...]:
        recipients = self.recipients
        return (recipients,) if isinstance(recipients, str) else recipients

    @property
    def substitutions(self) -> dict[str, str] | None:
        if not self.sub_keys:
            return None
        return dict(zip(self.sub_keys, self.sub_values, strict=True))


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """The request's content, stored once for all its personalizations."""

    from_email: str
    subject: str | None
    text: str | None
    html: str | None
    template_id: str | None
    personalizations: tuple[ParsedPersonalization, ...]
    sandbox: bool
    reply_to: str | None = None


def is_email(value: object) -> bool:
    return isinstance(value, str) and _EMAIL_RE.fullmatch(value) is not None


def _help(anchor: str) -> str:
    return f"{_HELP}#{anchor}"


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _string_dict(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def parse_mail(body: object) -> ParsedMail:
    """Validate a decoded body like SendGrid does; raise `MailErrors` when it would refuse it."""
    if not isinstance(body, dict):
        raise MailErrors([MailError("Bad Request", None)])
    errors: list[MailError] = []

    from_email = _check_from(body, errors)
    _check_reply_to(body, errors)
    reply_to = body.get("reply_to")
    reply_to_email = reply_to.get("email") if isinstance(reply_to, dict) else None
    template_id = body.get("template_id")
    if template_id is not None and not _nonempty_str(template_id):
        errors.append(
            MailError(
                "The template_id must be a string.", "template_id", _help("message.template_id")
            )
        )
        template_id = None

    message_args = body.get("custom_args")
    if message_args is not None and not _string_dict(message_args):
        errors.append(
            MailError(
                "The custom_args must be an object whose values are strings.",
                "custom_args",
                _help("message.custom_args"),
            )
        )
        message_args = None
    message_key = message_args.get(KEY_ARG) if message_args else None
    message_batch = message_args.get(BATCH_ARG) if message_args else None

    personalizations = _check_personalizations(body, errors, message_key, message_batch)

    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        errors.append(
            MailError("The subject must be a string.", "subject", _help("message.subject"))
        )
        subject = None
    every_has_subject = bool(personalizations) and all(
        _nonempty_str(p.subject) for p in personalizations
    )
    if not subject and template_id is None and not every_has_subject:
        errors.append(
            MailError(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
                _help("message.subject"),
            )
        )

    text, html = _check_content(body, errors, template_id is not None)
    sandbox = _sandbox_enabled(body, errors)

    if errors:
        raise MailErrors(errors)
    assert from_email is not None
    return ParsedMail(
        from_email=from_email,
        subject=subject or None,
        text=text,
        html=html,
        template_id=template_id,
        personalizations=tuple(personalizations),
        sandbox=sandbox,
        reply_to=reply_to_email if isinstance(reply_to_email, str) else None,
    )


def _check_from(body: dict[str, Any], errors: list[MailError]) -> str | None:
    sender = body.get("from")
    if not isinstance(sender, dict):
        errors.append(
            MailError(
                "The from object must be provided for every email send. It is an object that "
                "requires an email parameter, but may also contain a name parameter.",
                "from",
                _help("message.from"),
            )
        )
        return None
    email = sender.get("email")
    if not is_email(email):
        errors.append(
            MailError(
                "The from email does not contain a valid address.",
                "from.email",
                _help("message.from"),
            )
        )
        return None
    assert isinstance(email, str)
    return email


def _check_reply_to(body: dict[str, Any], errors: list[MailError]) -> None:
    reply_to = body.get("reply_to")
    if reply_to is None:
        return
    if not isinstance(reply_to, dict) or not is_email(reply_to.get("email")):
        errors.append(
            MailError(
                "The reply_to email does not contain a valid address.",
                "reply_to.email",
                _help("message.reply_to"),
            )
        )


def _check_personalizations(
    body: dict[str, Any],
    errors: list[MailError],
    message_key: str | None,
    message_batch: str | None,
) -> list[ParsedPersonalization]:
    items = body.get("personalizations")
    if not isinstance(items, list) or not items:
        errors.append(
            MailError(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                _help("message.personalizations"),
            )
        )
        return []
    if len(items) > MAX_PERSONALIZATIONS:
        errors.append(
            MailError(
                f"The personalizations field must have at most {MAX_PERSONALIZATIONS} items",
                "personalizations",
                _help("message.personalizations"),
            )
        )
        return []
    parsed: list[ParsedPersonalization] = []
    recipients = 0
    key_tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
    for index, item in enumerate(items):
        result = _check_personalization(index, item, errors, message_key, message_batch, key_tuples)
        if result is not None:
            personalization, count = result
            parsed.append(personalization)
            recipients += count
    if recipients > MAX_RECIPIENTS:
        errors.append(
            MailError(
                f"The total number of recipients (to, cc and bcc) across all personalizations "
                f"must be at most {MAX_RECIPIENTS}.",
                "personalizations",
                _help("message.recipient_limit"),
            )
        )
    return parsed


def _check_personalization(
    index: int,
    item: object,
    errors: list[MailError],
    message_key: str | None,
    message_batch: str | None,
    key_tuples: dict[tuple[str, ...], tuple[str, ...]],
) -> tuple[ParsedPersonalization, int] | None:
    prefix = f"personalizations.{index}"
    if not isinstance(item, dict):
        errors.append(
            MailError(
                "Each personalization must be an object.", prefix, _help("message.personalizations")
            )
        )
        return None
    error_count = len(errors)

    to = item.get("to")
    if not isinstance(to, list) or not to:
        errors.append(
            MailError(
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"{prefix}.to",
                _help("message.personalizations.to"),
            )
        )
        to = []
    seen: set[str] = set()
    to_emails: list[str] = []
    recipient_count = 0
    for list_name in _RECIPIENT_LISTS:
        entries = to if list_name == "to" else item.get(list_name)
        if entries is None:
            continue
        if not isinstance(entries, list):
            errors.append(
                MailError(
                    f"The {list_name} field must be an array.",
                    f"{prefix}.{list_name}",
                    _help(f"message.personalizations.{list_name}"),
                )
            )
            continue
        for position, entry in enumerate(entries):
            email = entry.get("email") if isinstance(entry, dict) else None
            field = f"{prefix}.{list_name}.{position}.email"
            if not is_email(email):
                errors.append(
                    MailError(
                        "Does not contain a valid address.",
                        field,
                        _help(f"message.personalizations.{list_name}"),
                    )
                )
                continue
            assert isinstance(email, str)
            folded = email.lower()
            if folded in seen:
                errors.append(
                    MailError(
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{email}] in the {prefix}.{list_name} field.",
                        field,
                        _help("message.personalizations"),
                    )
                )
                continue
            seen.add(folded)
            recipient_count += 1
            if list_name == "to":
                to_emails.append(email)

    subject = item.get("subject")
    if subject is not None and not isinstance(subject, str):
        errors.append(
            MailError(
                "The subject must be a string.",
                f"{prefix}.subject",
                _help("message.personalizations.subject"),
            )
        )
        subject = None

    substitutions = item.get("substitutions")
    if substitutions is not None:
        field = f"{prefix}.substitutions"
        if not _string_dict(substitutions):
            errors.append(
                MailError(
                    "Substitutions must be an object whose keys and values are strings.",
                    field,
                    _help("message.personalizations.substitutions"),
                )
            )
            substitutions = None
        elif _substitution_bytes(substitutions) > MAX_SUBSTITUTION_BYTES:
            errors.append(
                MailError(
                    "The total collective size of your substitutions may not exceed "
                    f"{MAX_SUBSTITUTION_BYTES:,} bytes per personalization object.",
                    field,
                    _help("message.personalizations.substitutions"),
                )
            )
            substitutions = None

    custom_args = item.get("custom_args")
    if custom_args is not None and not _string_dict(custom_args):
        errors.append(
            MailError(
                "The custom_args must be an object whose values are strings.",
                f"{prefix}.custom_args",
                _help("message.personalizations.custom_args"),
            )
        )
        custom_args = None

    if len(errors) > error_count:
        return None
    sub_keys: tuple[str, ...] = ()
    sub_values: tuple[str, ...] = ()
    if substitutions:
        names = tuple(substitutions)
        sub_keys = key_tuples.setdefault(names, names)
        sub_values = tuple(substitutions.values())
    key = custom_args.get(KEY_ARG, message_key) if custom_args else message_key
    batch = custom_args.get(BATCH_ARG, message_batch) if custom_args else message_batch
    return (
        ParsedPersonalization(
            recipients=to_emails[0] if len(to_emails) == 1 else tuple(to_emails),
            subject=subject,
            sub_keys=sub_keys,
            sub_values=sub_values,
            key=key,
            batch=batch,
            recipient=custom_args.get(RECIPIENT_ARG) if custom_args else None,
        ),
        recipient_count,
    )


def _substitution_bytes(substitutions: dict[str, str]) -> int:
    total = 0
    for name, value in substitutions.items():
        # ASCII fast path: len() is the UTF-8 size when the text is ASCII.
        total += len(name) if name.isascii() else len(name.encode("utf-8"))
        total += len(value) if value.isascii() else len(value.encode("utf-8"))
    return total


def _check_content(
    body: dict[str, Any], errors: list[MailError], has_template: bool
) -> tuple[str | None, str | None]:
    content = body.get("content")
    if content is None and has_template:
        return None, None
    if not isinstance(content, list) or not content:
        errors.append(
            MailError(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block. We typically suggest both "
                "text/plain and text/html blocks are included, but only one block is required.",
                "content",
                _help("message.content"),
            )
        )
        return None, None
    text: str | None = None
    html: str | None = None
    types: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            errors.append(
                MailError(
                    "Each content block must be an object.",
                    f"content.{index}",
                    _help("message.content"),
                )
            )
            continue
        kind = part.get("type")
        value = part.get("value")
        if not _nonempty_str(kind):
            errors.append(
                MailError(
                    "The content type must be a string at least one character in length.",
                    f"content.{index}.type",
                    _help("message.content.type"),
                )
            )
            continue
        if not _nonempty_str(value):
            errors.append(
                MailError(
                    "The content value must be a string at least one character in length.",
                    f"content.{index}.value",
                    _help("message.content.value"),
                )
            )
            continue
        assert isinstance(kind, str) and isinstance(value, str)
        kind = kind.split(";", 1)[0].strip().lower()
        types.append(kind)
        if kind == "text/plain" and text is None:
            text = value
        elif kind == "text/html" and html is None:
            html = value
    if not _content_order_ok(types):
        errors.append(
            MailError(
                "If present, text/plain must be first, followed by text/html, followed by any "
                "other content.",
                "content",
                _help("message.content"),
            )
        )
    return text, html


def _content_order_ok(types: list[str]) -> bool:
    expected = [t for t in ("text/plain", "text/html") if t in types]
    return types[: len(expected)] == expected and len(set(types)) == len(types)


def _sandbox_enabled(body: dict[str, Any], errors: list[MailError]) -> bool:
    settings = body.get("mail_settings")
    if settings is None:
        return False
    if not isinstance(settings, dict):
        errors.append(
            MailError(
                "The mail_settings must be an object.",
                "mail_settings",
                _help("message.mail_settings"),
            )
        )
        return False
    sandbox = settings.get("sandbox_mode")
    if sandbox is None:
        return False
    enable = sandbox.get("enable") if isinstance(sandbox, dict) else None
    if not isinstance(enable, bool):
        errors.append(
            MailError(
                "The sandbox_mode enable must be a boolean.",
                "mail_settings.sandbox_mode.enable",
                _help("message.mail_settings.sandbox_mode"),
            )
        )
        return False
    return enable
