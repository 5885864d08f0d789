"""Playbooks for the dashboard's pages, parsed once per version of their file.

Why: parsing and validating a playbook takes ~35 ms, and a page runs on every click and every
auto-refresh; keyed on the file's modification time, an edited playbook is read again at the
next run (a broken one raises ``PlaybookError`` as ``load_playbook`` does).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from crisiscomms.dashboard.data import settings
from crisiscomms.playbook.loader import Playbook, load_playbook


@st.cache_resource(show_spinner=False, max_entries=64)
def _parsed(name: str, directory: str, stamp: float) -> Playbook:
    return load_playbook(name, Path(directory))


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # gone: load_playbook names the playbooks there are
        return 0.0


def playbook(name: str) -> Playbook:
    """The workspace's playbook ``name`` (``Settings.playbooks_dir``)."""
    directory = settings().playbooks_dir
    return _parsed(name, str(directory), _stamp(directory / f"{name}.yaml"))
