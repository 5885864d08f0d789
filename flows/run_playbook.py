"""Prefect entrypoints (prefect.yaml, ``flow.from_source``): thin re-exports of the flows that
live in the engine, :mod:`crisiscomms.flows.run_playbook`."""

from crisiscomms.flows.run_playbook import publish_batches, publish_stage, resume_incident

__all__ = ["publish_batches", "publish_stage", "resume_incident"]
