"""The subscribe queue's worker (:class:`SubscribeMailer`): record an accepted subscribe
request, render the confirmation email when one is due, send it.

The subscriptions app answers a subscribe request before any of this (:mod:`.work_queue`), so
the request path never waits for it; what is left to keep it from slowing the requests down is
the interpreter and the database, which the workers share with the event loop:

- **one worker at a time records and renders** (``_gate``). Recording is one short
  transaction; rendering reuses the compiled templates (:class:`ConfirmationTemplates`,
  rebuilt only when the approvals lock or the approvers' keys change). Both are interpreter
  work: sixteen workers doing it at once would queue the event loop behind them for the GIL
  (each turn is 5 ms, and the loop waits for several) and behind each other for SQLite's
  write lock. Behind the gate a worker waits on a lock, holding nothing;
- **the provider's seconds are spent outside it**, waiting on a socket, so
  ``CRISISCOMMS_SUBSCRIBE_SENDERS`` emails are in flight at once whatever the gate does;
- a send that failed clears ``confirm_sent_at`` (under the gate, one short transaction) so
  the reader's next request sends again at once, with a new link.

One email channel (one pooled HTTP client) serves every worker. A job that raises is logged by
the queue without its data.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from crisiscomms.audience import subscriptions as subs
from crisiscomms.audience.models import Recipient
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.core.database import session_scope
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import RenderedMessage
from crisiscomms.identity.keys import APPROVERS_DIR
from crisiscomms.render.approvals import LOCK_NAME, ApprovalLock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubscribeJob:
    """An accepted subscribe request, checked, waiting for a worker (slots: one object per
    waiting job for a full garbage collection to walk, not two)."""

    email: str
    components: tuple[str, ...]
    locale: str


@dataclass(frozen=True)
class _Due:
    """A confirmation email to send: rendered, or why it cannot be."""

    recipient_id: int
    address: str
    token: str
    message: RenderedMessage | None
    problem: str = ""


def _stamp(*paths: Path) -> tuple[tuple[int, int], ...]:
    stamps = []
    for path in paths:
        try:
            found = os.stat(path)
            stamps.append((found.st_mtime_ns, found.st_size))
        except OSError:
            stamps.append((-1, -1))
    return tuple(stamps)


class ConfirmationSource:
    """The workspace's confirmation templates under its approvals lock, read again only when
    the lock or the approvers' keys change (reading the lock verifies every signature, half a
    second for a workspace; compiling the templates 15 ms: neither is paid per email)."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.watched = (templates_dir / LOCK_NAME, templates_dir / APPROVERS_DIR)
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._templates: subs.ConfirmationTemplates | None = None
        self._guard = threading.Lock()

    def current(self) -> subs.ConfirmationTemplates:
        with self._guard:
            stamp = _stamp(*self.watched)
            if self._templates is None or stamp != self._stamp:
                lock = ApprovalLock(self.templates_dir)
                self._templates = subs.ConfirmationTemplates(self.templates_dir, lock)
                self._stamp = stamp
            return self._templates


class SubscribeMailer:
    """Handles one :class:`SubscribeJob` (the queue calls it from its worker threads)."""

    def __init__(self, settings: Settings, engine: Engine, *, base_url: str,
                 page_name: str) -> None:
        self.settings, self.engine = settings, engine
        self.base_url, self.page_name = base_url, page_name
        self.channel = SendGridEmailChannel.from_settings(settings)  # None without a key
        self.templates = ConfirmationSource(settings.templates_dir)
        self._gate = threading.Lock()

    def __call__(self, job: SubscribeJob) -> None:
        with self._gate:
            due = self._record(job)
        if due is None:
            return
        problem = due.problem or self._send(due)
        if problem:  # let the next request resend at once (with a new token)
            log.warning("subscription confirmation for recipient %s not sent: %s",
                        due.recipient_id, problem)
            with self._gate, session_scope(self.engine) as session:
                row = session.get(Recipient, due.recipient_id)
                if row is not None:
                    row.confirm_sent_at = None

    def _record(self, job: SubscribeJob) -> _Due | None:
        """Record the request; the email to send, rendered, when one is due."""
        try:
            with session_scope(self.engine) as session:
                result = subs.subscribe(session, email=job.email, components=job.components,
                                        locale=job.locale)
                if result.confirm_token is None:
                    return None
                row = session.get(Recipient, result.recipient_id)  # in the session already
                unsubscribe_token = row.unsubscribe_token if row else None
                components = (row.components or "").split(",") if row and row.components \
                    else []
        except IntegrityError:  # the same address by another process at once: it sends
            log.info("subscribe: an address was being recorded by another worker")
            return None
        token = result.confirm_token
        if self.channel is None or not unsubscribe_token:
            return _Due(result.recipient_id, job.email, token, None,
                        "email channel not configured")
        try:
            message = self.templates.current().message(
                channel=self.channel.name, locale=job.locale,
                organization=self.settings.organization, page_name=self.page_name,
                confirm_url=f"{self.base_url}/v1/confirm/{token}",
                unsubscribe_url=f"{self.base_url}/v1/unsubscribe/{unsubscribe_token}",
                components=components)
        except (CrisisCommsError, ValueError, OSError) as exc:
            return _Due(result.recipient_id, job.email, token, None,
                        f"{type(exc).__name__}: {exc}")
        return _Due(result.recipient_id, job.email, token, message)

    def _send(self, due: _Due) -> str:
        """Send the email; "" when sent, else why not."""
        assert self.channel is not None and due.message is not None
        try:
            sent = subs.send_confirmation(self.channel, due.message, due.recipient_id,
                                          due.address, organization=self.settings.organization,
                                          token=due.token)
        except (CrisisCommsError, ValueError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return "" if sent.outcome == "sent" else f"{sent.outcome}: {sent.reason}"
