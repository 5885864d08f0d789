"""Prefect entrypoint (``flow.from_source``, ``prefect deploy flows/listen_x.py:listen_x``):
a thin re-export of :mod:`crisiscomms.flows.listen_x`, the X mentions and replies poller."""

from crisiscomms.flows.listen_x import listen_x

__all__ = ["listen_x"]
