"""The adapters, one per source kind: nothing else lists kinds.

:func:`authenticate` is what the API calls first: the source a request comes from (named in
the URL, or for ``/v1/events`` the events source whose key signed it) and the delivery id its
scheme gives, or a 401."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from crisiscomms.core.errors import IntakeError
from crisiscomms.intake.adapters.alertmanager import AlertmanagerAdapter
from crisiscomms.intake.adapters.events import EventsAdapter
from crisiscomms.intake.adapters.grafana import GrafanaAdapter
from crisiscomms.intake.adapters.pagerduty import PagerDutyAdapter
from crisiscomms.intake.adapters.recall import RecallAdapter
from crisiscomms.intake.contract import Adapter, Source, SourceKind
from crisiscomms.intake.sources import SourceStore

EVENTS = EventsAdapter()
ADAPTERS: Mapping[SourceKind, Adapter] = MappingProxyType({
    adapter.kind: adapter for adapter in (
        EVENTS, AlertmanagerAdapter(), PagerDutyAdapter(), GrafanaAdapter(), RecallAdapter())
})
"""Every adapter by kind, in the order of the docs and the OpenAPI."""


def adapter_for(kind: SourceKind | str) -> Adapter:
    """The adapter of ``kind``; IntakeError 404 (field ``kind``) for an unknown one."""
    try:
        return ADAPTERS[SourceKind(kind)]
    except ValueError:
        raise IntakeError(f"kind: no such kind of source; one of "
                          f"{', '.join(k.value for k in SourceKind)}", status=404,
                          field="kind") from None


def authenticate(store: SourceStore, kind: SourceKind, name: str | None,
                 headers: Mapping[str, str], body: bytes, *, now: float,
                 window_s: int) -> tuple[Source, str | None]:
    """The verified source of a request and its delivery id (None when the scheme has none:
    bearer tokens); IntakeError 401 otherwise. ``name`` is the URL's source (None for
    ``/v1/events``, whose source is found by its key)."""
    if kind is SourceKind.events and name is None:
        return EVENTS.identify(store.of_kind(kind), headers, body, now=now, window_s=window_s)
    if name is None:
        raise IntakeError("source: the URL names no source", status=401, field="source")
    source = store.find(name, kind)
    return source, ADAPTERS[kind].verify(source, headers, body, now=now, window_s=window_s)
