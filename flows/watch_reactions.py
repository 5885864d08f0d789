"""Prefect entrypoint (``flow.from_source``, prefect.yaml): a thin re-export of the listening
watcher, :mod:`crisiscomms.flows.watch_reactions` (one pass per run). ``python
flows/watch_reactions.py --every 60`` serves it on that schedule."""

from crisiscomms.flows.watch_reactions import main, watch_reactions

__all__ = ["watch_reactions"]

if __name__ == "__main__":
    main()
