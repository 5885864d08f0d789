"""Keep secrets out of logs and stored reasons: a filter that blanks authorization values in
provider SDK logs, and :func:`safe_reason` for an exception kept or shown."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

Redaction = tuple[re.Pattern[str], str]

BEARER = (re.compile(r"Bearer\s+[^\s'\",}]+"), "Bearer [redacted]")

_SECRETISH = (re.compile(r"//[^/@\s]+@"), re.compile(r"Bearer\s+\S+"))


def safe_reason(exc: BaseException) -> str:
    """An exception as one line (type and message, at most 300 characters of it) with
    credentials in URLs and bearer tokens blanked: for logs, and for reasons stored and shown
    (``IntakeEvent.error``)."""
    text = " ".join(str(exc).split())[:300]
    text = _SECRETISH[0].sub("//***@", text)
    text = _SECRETISH[1].sub("Bearer ***", text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RedactSecrets(logging.Filter):
    """Rewrites a record's message with each pattern's match replaced."""

    def __init__(self, redactions: Sequence[Redaction]) -> None:
        super().__init__()
        self.redactions = tuple(redactions)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for pattern, replacement in self.redactions:
            redacted = pattern.sub(replacement, redacted)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_redaction(logger_names: Iterable[str], redactions: Sequence[Redaction]) -> None:
    """Attach the filter to the named loggers once (called when a channel is created)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets(redactions))
