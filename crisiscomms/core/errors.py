"""The engine's errors: each names what is wrong so a PR lead can fix it at 3 a.m."""

from __future__ import annotations


class CrisisCommsError(Exception):
    """Base of every error the engine raises on purpose."""


class PlaybookError(CrisisCommsError):
    """A playbook is unknown or invalid."""


class FactsError(CrisisCommsError):
    """The facts of an incident are missing or invalid."""


class RenderError(CrisisCommsError):
    """A template failed to render (undefined variable, sandbox violation)."""


class LimitError(CrisisCommsError):
    """A rendered message breaks a channel limit; approved text is never truncated."""


class ApprovalError(CrisisCommsError):
    """A template or bundle is not approved for exactly what would be sent."""


class IncidentError(CrisisCommsError):
    """An incident is unknown or cannot take the requested step."""


class WorkspaceError(CrisisCommsError):
    """A workspace (the folder of playbooks, templates and approvals) is missing or invalid."""


class NotInWorkspaceError(WorkspaceError):
    """A command that needs a workspace ran outside any (and none was named)."""
