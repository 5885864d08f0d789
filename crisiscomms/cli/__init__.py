"""The ``crisiscomms`` command line (Typer): one module per command group.

- :mod:`.workspace`: ``new`` (and the global ``--workspace``, in :mod:`.common`)
- :mod:`.incidents`: ``init``, ``trigger``, ``approve``, ``incidents``, ``statements``
- :mod:`.delivery`: ``resume``, ``retry``, ``failures``
- :mod:`.templates`: ``templates status|propose|approve|diff|gc|migrate``, ``lint``
- :mod:`.keys`: ``keys init|list|whoami`` (approvers' signing keys)
- :mod:`.recipients`: ``recipients import``
- :mod:`.statuspage`: ``serve``, ``statuspage build``, ``maintenance schedule``, ``subscriptions``
- :mod:`.drills`: ``drill``, ``emulators``, ``demo``
- :mod:`.database`: ``db status|upgrade``
- :mod:`.reactions`: ``reactions score|train|correct|...`` (triage and what our people teach it)
- :mod:`.listen`: ``listen`` (the listening receivers: provider events, replies, tickets, CSAT)
- :mod:`.users`: ``users add|set|remove|list`` (the dashboard's people and roles), ``dashboard``
- :mod:`.sources`: ``sources add|rotate|list|remove`` (the systems that may send events, keys)
- :mod:`.intake`: ``api`` (the intake API: events in), ``dispatch`` (start accepted events' flows)
- :mod:`.worker`: ``worker`` (the warm Prefect worker: our flows run in its process)
- :mod:`.sms`: ``sms serve`` (Twilio's STOP/HELP replies and status callbacks), ``sms release``
  (send the SMS that waited out quiet hours)

Errors the engine raises on purpose are printed as one clear line on stderr with exit code 2
(:func:`.common._run`); nothing half-done is left behind because the engine checks before it
writes.
"""

from __future__ import annotations

import importlib

from crisiscomms.cli.common import app

# Each module adds its commands to ``app``; this order is the order of ``crisiscomms --help``.
COMMAND_GROUPS = ("workspace", "incidents", "drills", "delivery", "recipients", "templates",
                  "keys", "statuspage", "database", "reactions", "listen", "users", "sources",
                  "intake", "worker", "sms")
for _group in COMMAND_GROUPS:
    importlib.import_module(f"crisiscomms.cli.{_group}")

__all__ = ["app"]
