"""Prefect entrypoint (``flow.from_source``, prefect.yaml): a thin re-export of the listening
watcher, :mod:`crisiscomms.flows.watch_reactions` (one pass per run; schedule it)."""

from crisiscomms.flows.watch_reactions import watch_reactions

__all__ = ["watch_reactions"]
