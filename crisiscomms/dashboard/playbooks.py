"""Playbooks for the dashboard's pages, parsed once per version of their file.

Why: parsing and validating a playbook takes ~35 ms, and a page runs on every click and every
auto-refresh; parsed once per version of the file (modification time and size), an edited
playbook is read again at the next run (a broken one raises ``PlaybookError`` as
``load_playbook`` does).
"""

from __future__ import annotations

from crisiscomms.dashboard.data import settings
from crisiscomms.playbook.loader import Playbook, playbook_on_disk


def playbook(name: str) -> Playbook:
    """The workspace's playbook ``name`` (``Settings.playbooks_dir``), parsed once per version
    of its file (``playbook.loader.playbook_on_disk``)."""
    return playbook_on_disk(name, settings().playbooks_dir)
