"""The public status page: static HTML, Statuspage-compatible JSON (API v2) and feeds.

Modules: :mod:`.model` (the state and the lifecycle rules), :mod:`.indicator` (component
statuses and the page indicator), :mod:`.uptime` (90-day bars), :mod:`.api` (the JSON v2
documents), :mod:`.views` (HTML for people, per locale, from :mod:`.catalog` strings),
:mod:`.feeds` (Atom and RSS), :mod:`.site` (every file of one build), :mod:`.publish` (the
atomic switch of the live site), :mod:`.page` (load, change, build and publish under a lock)
and :mod:`.server` (a small static server for it). Email subscribers and their double opt-in
live in :mod:`crisiscomms.audience.subscriptions`.
"""

from crisiscomms.statuspage.model import LifecycleError

__all__ = ["LifecycleError"]
