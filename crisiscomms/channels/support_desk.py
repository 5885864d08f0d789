"""The unified holding statement for support agents, published as files.

Layout of ``output_dir``::

    <incident_ref>/<stage>.<locale>.md     the statement of each stage, as approved
    <incident_ref>/current.<locale>.md     the one agents give now
    holding_statements.json     {incident_ref: {locale: {stage, text, key, published_at}}}
    published.json              every key published: {key: {incident_ref, locale, stage,
                                published_at}} (what makes a send idempotent)

Every file is written whole (temp file + ``os.replace``); ``published.json`` is written last, so
a crash in between leaves the key unpublished and the retry writes the same files again. A
retried key that was published already answers *sent* without touching ``current``, so a late
retry of an older stage never replaces a newer statement. A Zendesk or Intercom macro webhook can
later replace this channel behind the same protocol.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from crisiscomms.channels.base import BaseChannel
from crisiscomms.core.files import dumps, path_lock, read_json, utc_now, write_atomic
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    OutboundBatch,
    RenderedMessage,
)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")













class SupportDeskChannel(BaseChannel):
    """Writes the current holding statement per incident and locale for support agents."""

    name: ClassVar[str] = "support"
    order: ClassVar[int] = 30
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_body_bytes=65536)

    def __init__(self, output_dir: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.output_dir = Path(output_dir).absolute()
        self.clock = clock
        self._lock = path_lock(self.output_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Always configured: the statements are files under ``data_dir/support``."""
        return cls(settings.data_dir / "support")

    def __repr__(self) -> str:
        return f"SupportDeskChannel({str(self.output_dir)!r})"

    @property
    def index_path(self) -> Path:
        return self.output_dir / "holding_statements.json"

    @property
    def published_path(self) -> Path:
        return self.output_dir / "published.json"

    def validate(self, message: RenderedMessage) -> list[str]:
        problems = super().validate(message)
        for what, value in (("stage", message.stage), ("locale", message.locale)):
            if not _SAFE_NAME.match(value):
                problems.append(f"{what} {value!r} cannot name a file")
        return problems

    def statements(self) -> dict[str, Any]:
        """The index: {incident_ref: {locale: {stage, text, key, published_at}}}."""
        return read_json(self.index_path)

    def accepted(self, key: str) -> bool:
        return key in read_json(self.published_path)

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Crash reconciliation: was this batch's key published already?"""
        return self.accepted(batch.key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / ".lock", "a+") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        text = batch.message.parts.get("text")
        if not text:
            raise ValueError(f"batch {batch.key}: the message has no text")
        ref = batch.facts.incident_ref
        stage, locale = batch.message.stage, batch.message.locale
        for what, value in (("stage", stage), ("locale", locale)):
            if not _SAFE_NAME.match(value):
                return DeliveryResult.permanent(f"{what} {value!r} cannot name a file")
        provider_id = f"{ref}/{stage}.{locale}"
        try:
            with self._locked():
                published = read_json(self.published_path)
                if batch.key in published:
                    return DeliveryResult.sent(provider_id)
                now = self.clock().isoformat(timespec="seconds")
                body = text if text.endswith("\n") else text + "\n"
                folder = self.output_dir / ref
                write_atomic(folder / f"{stage}.{locale}.md", body)
                write_atomic(folder / f"current.{locale}.md", body)
                index = read_json(self.index_path)
                index.setdefault(ref, {})[locale] = {
                    "stage": stage,
                    "text": text,
                    "key": batch.key,
                    "published_at": now,
                }
                write_atomic(self.index_path, dumps(index))
                published[batch.key] = {
                    "incident_ref": ref,
                    "locale": locale,
                    "stage": stage,
                    "published_at": now,
                }
                write_atomic(self.published_path, dumps(published))
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            return DeliveryResult.retry(f"holding statement not written: {name}: {exc.strerror}")
        except ValueError as exc:
            return DeliveryResult.retry(f"support desk index unreadable: {exc}")
        return DeliveryResult.sent(provider_id)
