"""Keep secrets out of provider SDK logs: a filter that blanks authorization values."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

Redaction = tuple[re.Pattern[str], str]

BEARER = (re.compile(r"Bearer\s+[^\s'\",}]+"), "Bearer [redacted]")


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
