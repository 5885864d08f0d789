"""The public status page as a channel: the adapter between the ledger and
:mod:`crisiscomms.statuspage`.

The channel keeps no database state: the page's own ``state.json`` (incidents, updates,
components, maintenances) lives beside the site, so it publishes while the database, Prefect or
the engine are down, and the whole site is regenerated on every update (see
:mod:`crisiscomms.statuspage.publish` for the layout and the atomic switch of ``site``).

Publishing an update: the update is checked against the incident lifecycle and added to the
state, the site is generated from it, the state committed (its ``generation`` goes up by one),
then the site is made live atomically. A refused transition (resolved → investigating without a
reopen, an unknown status) or text the page cannot show (a control character: see
:func:`crisiscomms.statuspage.model.check_text`) is a *permanent* failure with the reason, and
changes nothing. A state that cannot be built (one written before that check) is never
committed over: the send answers *retryable* with the place and the repair
(``crisiscomms statuspage repair``). When switching fails, the previous site stays live and
the send answers *retryable*; the retry finds the update already in the state, sees the live
site is older than the state, and publishes it then. A send is *sent* only once the live
site shows the update. Serve ``output_dir/site``.

Idempotent by key: an update whose batch key is already in the state is not added again.
The incident's page is ``incidents/<id>.html`` where ``<id>`` is the last part of the facts'
``status_page_url`` (``.../incidents/drill-outage-001``) when it names one, so the page is
where the messages link to; else the incident reference.
A stage whose id starts with ``reopen`` is the explicit reopen of a closed incident.
Components come from the facts (``components``); their status from ``component_status`` when
given, else from the severity (minor → degraded_performance, major → partial_outage,
critical → major_outage), and operational once the incident is resolved.

Locales: Statuspage's JSON has one body per update, so the root of the site (``index.html``,
``api/v2/``) carries the default locale (the ``default_locale`` given, else the first locale ever
published); every other locale gets the same site under ``<locale>/``.
"""

from __future__ import annotations

import errno
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Self

from crisiscomms.channels.base import BaseChannel
from crisiscomms.core.errors import PlaybookError
from crisiscomms.core.files import utc_now
from crisiscomms.core.group_commit import CallerCommit
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    ChannelLimits,
    DeliveryResult,
    Lane,
    OutboundBatch,
    RenderedMessage,
)
from crisiscomms.playbook.loader import available_playbooks, load_playbook
from crisiscomms.statuspage import model, publish
from crisiscomms.statuspage.model import INCIDENT_STATUSES, LifecycleError, iso, short_id
from crisiscomms.statuspage.page import StatusPage, StatusPageError
from crisiscomms.statuspage.publish import Content

__all__ = ["INCIDENT_STATUSES", "StatusPageChannel", "build_status_page", "iso", "short_id",
           "status_page_default_locale"]


@lru_cache(maxsize=8)
def _default_locale(playbooks_dir: Path, stamp: float) -> str | None:
    """The ``default_locale`` the playbooks share (the most common one; ties: alphabetical)."""
    counts: Counter[str] = Counter()
    for name in available_playbooks(playbooks_dir):
        try:
            counts[load_playbook(name, playbooks_dir).default_locale] += 1
        except PlaybookError:
            continue
    if not counts:
        return None
    return min(counts, key=lambda loc: (-counts[loc], loc))


def status_page_default_locale(settings: Settings) -> str | None:
    """The locale of the status page's root (``index.html``, ``api/v2``): the playbooks'
    ``default_locale``; every other locale is published under ``<locale>/``."""
    folder = settings.playbooks_dir
    try:
        stamp = folder.stat().st_mtime
    except OSError:
        return None
    return _default_locale(folder, stamp)


def _subscribe_url(settings: Settings) -> str | None:
    if not settings.subscriptions_url:
        return None
    return f"{settings.subscriptions_url.rstrip('/')}/v1/subscribe"


def build_status_page(settings: Settings) -> StatusPage:
    """The status page directory as the CLI (``maintenance schedule``, ``statuspage build``)
    and the channel (:meth:`StatusPageChannel.from_settings`) see it: same name, URL, default
    locale and subscribe form."""
    return StatusPage(settings.resolved_status_page_dir,
                      page_name=f"{settings.organization} Status",
                      page_url=settings.status_page_url,
                      default_locale=status_page_default_locale(settings),
                      subscribe_url=_subscribe_url(settings))


class StatusPageChannel(BaseChannel):
    """Publishes incident updates to a static, atomically switched status page."""

    name: ClassVar[str] = "status_page"
    order: ClassVar[int] = 10
    lane: ClassVar[Lane] = Lane.first
    """First, awaited: every other message links to the incident's page."""
    limits: ClassVar[ChannelLimits] = ChannelLimits(max_body_bytes=65536)

    def __init__(
        self,
        output_dir: Path,
        *,
        page_name: str,
        page_url: str,
        default_locale: str | None = None,
        subscribe_url: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.page = StatusPage(output_dir, page_name=page_name, page_url=page_url,
                               default_locale=default_locale, subscribe_url=subscribe_url,
                               clock=clock)
        self.output_dir = self.page.output_dir
        self.page_name = page_name
        self.page_url = self.page.info.url
        self.default_locale = default_locale
        self.clock = clock
        self.page_id = self.page.info.id

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Always configured: the page is a directory of ours (``resolved_status_page_dir``)."""
        return cls(settings.resolved_status_page_dir,
                   page_name=f"{settings.organization} Status",
                   page_url=settings.status_page_url,
                   default_locale=status_page_default_locale(settings),
                   subscribe_url=_subscribe_url(settings))

    def __repr__(self) -> str:
        return f"StatusPageChannel({str(self.output_dir)!r}, page_url={self.page_url!r})"

    @property
    def state_path(self) -> Path:
        return self.page.state_path

    @property
    def site_path(self) -> Path:
        """The live site (a symlink to the current build); serve this directory."""
        return self.page.site_path

    # -- checks, no I/O ------------------------------------------------------------------------

    def validate(self, message: RenderedMessage) -> list[str]:
        problems = super().validate(message)
        if not model.is_locale(message.locale):
            problems.append(f"locale {message.locale!r} is not a locale code")
        return problems

    # -- state ---------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with publish.locked(self.output_dir):
            yield

    def accepted(self, key: str) -> bool:
        """True when an update with this idempotency key is in the committed state."""
        return key in self.page.load().get("keys", {})

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Crash reconciliation: is this batch's update already in the committed state?"""
        return self.accepted(batch.key)

    def live_generation(self) -> int:
        """The state generation the live site shows (0 when there is no site yet)."""
        return self.page.live_generation()

    # -- send ----------------------------------------------------------------------------------

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Add the update (once per key) and publish the regenerated site atomically."""
        text = batch.message.parts.get("text")
        if not text:
            raise ValueError(f"batch {batch.key}: the message has no text")
        if batch.incident_status not in INCIDENT_STATUSES:
            return DeliveryResult.permanent(
                f"incident status {batch.incident_status!r} is not one of "
                f"{', '.join(INCIDENT_STATUSES)}"
            )
        if not model.is_locale(batch.message.locale):
            return DeliveryResult.permanent(f"locale {batch.message.locale!r} is not a locale code")
        return _publisher(self.output_dir).run((batch, text), self._send_group)

    def _send_group(self, group: list[tuple[OutboundBatch, str]]) -> list[DeliveryResult]:
        """Every update of ``group`` added to the state, then one build, one commit and one
        publish for all of them (a stage's five locales arrive together: five rebuilds were
        most of an acknowledgement's status page time). A group in which one update is refused
        is sent again one update at a time, so that one refusal changes nothing else."""
        try:
            with self._locked():
                state = self.page.load()
                update_ids: list[str] = []
                added = False
                for batch, text in group:
                    known = state["keys"].get(batch.key)
                    if known is not None:
                        update_ids.append(known["update_id"])
                        continue
                    try:
                        update_ids.append(self._add_update(state, batch, text))
                    except LifecycleError as exc:
                        if len(group) > 1:
                            raise _OneByOne from None
                        return [DeliveryResult.permanent(
                            f"status page refused the update of {batch.facts.incident_ref}: "
                            f"{exc}")]
                    added = True
                files = self.page.commit(state) if added else None  # never commits what can't show
                if self.live_generation() < state["generation"]:
                    self.page.publish(state, files or self._site_files(state))
        except _OneByOne:
            return [self._send_group([one])[0] for one in group]
        except OSError as exc:
            reason = f"status page not published: {_describe(exc)}"
            return [DeliveryResult.retry(reason)] * len(group)
        except ValueError as exc:  # an unreadable state file
            return [DeliveryResult.retry(f"status page state unreadable: {exc}")] * len(group)
        except StatusPageError as exc:  # not built (the state is as it was); says how to repair
            return [DeliveryResult.retry(str(exc))] * len(group)
        return [DeliveryResult.sent(update_id) for update_id in update_ids]

    def _add_update(self, state: dict[str, Any], batch: OutboundBatch, text: str) -> str:
        facts = batch.facts
        try:
            return model.add_incident_update(
                state,
                key=batch.key,
                ref=facts.incident_ref,
                name=facts.title,
                status=batch.incident_status,
                severity=facts.severity,
                components=list(facts.components),
                component_status=facts.component_status,
                body=text,
                locale=batch.message.locale,
                stage=batch.message.stage,
                now=self.clock(),
                started_at=facts.started_at,
                resolved_at=facts.resolved_at,
                reopen=batch.message.stage.startswith("reopen"),
                slug=model.slug_from_url(facts.status_page_url),
                event=f"{batch.message.stage}:{facts.content_hash()[:16]}",
            )
        except ValueError as exc:  # bad input in the facts: never publishable
            raise LifecycleError(str(exc)) from None

    def _site_files(self, state: dict[str, Any]) -> dict[str, Content]:
        """Every file of the site, by relative path (StatusPageError naming the cause)."""
        return self.page.build_checked(state)


class _OneByOne(Exception):
    """A group held a refused update: send its updates one at a time."""


_PUBLISHERS: dict[Path, CallerCommit[tuple[OutboundBatch, str], DeliveryResult]] = {}
_PUBLISHERS_GUARD = threading.Lock()


def _publisher(output_dir: Path) -> CallerCommit[tuple[OutboundBatch, str], DeliveryResult]:
    """One group commit per output folder, shared by every channel instance in the process."""
    with _PUBLISHERS_GUARD:
        return _PUBLISHERS.setdefault(output_dir, CallerCommit())


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{name}: {exc.strerror or exc}"
