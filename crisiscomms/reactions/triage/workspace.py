"""The triager of a whole workspace: every receiver and poller scores with it."""

from __future__ import annotations

import logging

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.playbook.listening import Listening
from crisiscomms.playbook.loader import available_playbooks, load_playbook
from crisiscomms.reactions.triage import Triager

log = logging.getLogger(__name__)


def workspace_triager(settings: Settings) -> Triager:
    """One triager for every reaction: the cue lists and VIPs of all the workspace's playbooks
    together (a reaction arrives before we know which incident, hence which playbook, it is
    about; a cue of any playbook is worth a human's look), and the configured model."""
    cues: dict[str, dict[str, list[str]]] = {}
    vip: list[str] = []
    for name in available_playbooks(settings.playbooks_dir):
        try:
            listening = load_playbook(name, settings.playbooks_dir).listening
        except CrisisCommsError as exc:
            log.warning("playbook %s not used for triage: %s", name, exc)
            continue
        for locale, by_reason in listening.cues.items():
            for reason, phrases in by_reason.items():
                known = cues.setdefault(locale, {}).setdefault(reason, [])
                known.extend(p for p in phrases if p not in known)
        vip.extend(v for v in listening.vip if v not in vip)
    merged = Listening(cues={loc: {r: tuple(p) for r, p in rs.items()}
                             for loc, rs in cues.items()}, vip=tuple(vip))
    return Triager.for_playbook(merged, model_path=settings.triage_model_path)
