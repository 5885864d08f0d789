"""Prefect entrypoint (prefect.yaml, ``flow.from_source``): a thin re-export of the flow that
runs an accepted event, :mod:`crisiscomms.flows.handle_event`."""

from crisiscomms.flows.handle_event import handle_event

__all__ = ["handle_event"]
