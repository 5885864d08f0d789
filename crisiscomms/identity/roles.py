"""Roles and what each may do: the dashboard's access rules, in one table.

Five roles, named so in code, the users file and the bench:

- ``pr_lead``: runs the incident: triggers playbooks, previews, approves, publishes updates and
  the resolution, schedules maintenance, retries failures, sends approved replies;
- ``approver``: previews and approves bundles (the second person of a two-person rule), nothing
  else;
- ``support``: reads the holding statements, the Q&A and the remedies; changes nothing;
- ``executive``: watches incidents, reach and reactions; changes nothing;
- ``admin``: reads everything, including the audit trail and the users; acts only through the
  roles it also holds (an admin is not an approver by being an admin).

A person may hold several roles; what they may do is the union. Pages and actions ask for a
:class:`Permission`, never for a role, so a new role is one row of :data:`ROLE_PERMISSIONS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from crisiscomms.core.errors import IdentityError


class Role(StrEnum):
    pr_lead = "pr_lead"
    approver = "approver"
    support = "support"
    executive = "executive"
    admin = "admin"


class Permission(StrEnum):
    """One thing a signed-in person may see or do."""

    # reading
    view_incidents = "view_incidents"
    """The PR lead's incident list: status and rollout per channel."""
    view_support = "view_support"
    """Holding statements, Q&A, remedies."""
    view_executive = "view_executive"
    """The executive overview: reach, reactions, times, CSAT."""
    view_reactions = "view_reactions"
    """Reactions, flagged ones, spikes, automatic replies."""
    view_failures = "view_failures"
    """Failed and unconfirmed deliveries."""
    preview = "preview"
    """A stage's whole bundle as recipients will see it."""
    view_audit = "view_audit"
    """The audit trail and the users."""
    # acting
    trigger = "trigger"
    """Start a playbook or post its next stage (update, resolution)."""
    approve = "approve"
    """Approve a previewed bundle (the two-person rule compares identities)."""
    publish = "publish"
    """Publish an approved bundle."""
    retry = "retry"
    """Re-send failed deliveries."""
    schedule_maintenance = "schedule_maintenance"
    """Announce, start and complete scheduled maintenance on the status page."""
    reply = "reply"
    """Send a pre-approved reply to a flagged reaction."""


_READ = frozenset({Permission.view_incidents, Permission.view_support, Permission.view_executive,
                   Permission.view_reactions, Permission.view_failures, Permission.preview})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.pr_lead: _READ | {Permission.trigger, Permission.approve, Permission.publish,
                           Permission.retry, Permission.schedule_maintenance, Permission.reply},
    Role.approver: frozenset({Permission.view_incidents, Permission.preview, Permission.approve,
                              Permission.view_support}),
    Role.support: frozenset({Permission.view_support}),
    Role.executive: frozenset({Permission.view_executive}),
    Role.admin: _READ | {Permission.view_audit},
}
"""What each role may do. Support and executives only read; only ``pr_lead`` and ``approver``
act on an incident."""


def parse_roles(values: Iterable[str]) -> frozenset[Role]:
    """Role names as typed in the users file or on the command line; an unknown one is refused,
    naming the roles that exist."""
    roles: set[Role] = set()
    for raw in values:
        name = raw.strip().lower().replace("-", "_")
        try:
            roles.add(Role(name))
        except ValueError:
            raise IdentityError(
                f"unknown role {raw!r}; roles: {', '.join(r.value for r in Role)}",
                field="roles", values=(raw,)) from None
    return frozenset(roles)


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    """The union of what ``roles`` may do."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)
