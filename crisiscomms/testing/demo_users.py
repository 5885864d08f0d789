"""The demo's people: one user per role, so ``make demo`` can be tried as each of them.

Written only when the workspace has no users file yet (a real team's file is never touched),
each with a fresh random password that ``crisiscomms demo`` prints once. Two approvers, so the
two-person rule can be rehearsed.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from crisiscomms.identity.users import UserStore

DEMO_USERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("pr-lead", "Priya (PR lead)", ("pr_lead",)),
    ("approver-1", "Alex (approver)", ("approver",)),
    ("approver-2", "Bea (approver)", ("approver",)),
    ("support", "Sam (support)", ("support",)),
    ("executive", "Erin (executive)", ("executive",)),
    ("admin", "Ade (admin)", ("admin",)),
)


def ensure_demo_users(path: Path) -> dict[str, str]:
    """Create the demo users in ``path`` when it does not exist; their passwords (empty when
    the file was already there)."""
    if path.exists():
        return {}
    store = UserStore.load(path)
    passwords: dict[str, str] = {}
    for user_id, name, roles in DEMO_USERS:
        passwords[user_id] = secrets.token_urlsafe(12)
        store.add(user_id, display_name=name, roles=roles, password=passwords[user_id])
    return passwords
