"""Events in: monitoring, incident and recall systems start playbooks on their own (issue 13).

Where things live (the seams are in :mod:`crisiscomms.intake.contract`):

- ``contract.py``: what the parts hand each other: :class:`~contract.SourceKind`,
  :class:`~contract.Signal` (one alert, incident, recall or event of ours, read from a verified
  request), :class:`~contract.StageRequest` (what a playbook's rules make of a signal), the
  ``Adapter`` and ``Dispatcher`` protocols.
- ``signatures.py``: Standard Webhooks (``webhook-id``/``-timestamp``/``-signature``),
  PagerDuty v3 (``X-PagerDuty-Signature``), bearer tokens, Grafana's HMAC; ``sign_standard``
  for senders, tests and the README's curl.
- ``sources.py``: the sources file (``data/intake_sources.toml``, mode 600): one entry per
  sending system, its kind and its keys (rotation keeps the previous key valid for a grace
  period); ``crisiscomms sources ...``.
- ``adapters/``: one module per kind (``events`` = our own shape, ``alertmanager``,
  ``pagerduty``, ``grafana``, ``recall``) turning a verified body into signals; a registry.
- ``rules.py``: the playbooks' ``intake:`` sections: which signals run which playbook, with
  which components, severity and pre-approved facts.
- ``models.py``: ``IntakeEvent`` (the outbox: every accepted signal, its outcome and the flow
  run it started), ``IntakeGroup`` (an alert storm's one incident), ``SeenDelivery`` (replay
  memory).
- ``service.py``: accept a verified request: replay check, dedup, grouping, outbox rows.

Faces: ``api/intake.py`` (FastAPI, ``crisiscomms api``); the flow that runs an accepted event
is ``flows/handle_event.py`` (Prefect), started by a dispatcher (``flows/dispatch.py``).
"""
