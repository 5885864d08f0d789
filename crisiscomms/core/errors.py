"""The engine's errors: each names what is wrong so a PR lead can fix it at 3 a.m.

``str(exc)`` is the message a person reads (the CLI prints it as it is). The same facts are
also fields, for code: lint, the HTTP apps and the dashboard read ``exc.field`` or
:meth:`CrisisCommsError.fields`, never the message text::

    raise LimitError(f"{where}, field text: over the limit of 280 ...",
                     playbook="outage", stage="announce", channel="x", locale="en",
                     field="text", reason="over the limit of 280 ...")

``reason`` is what is wrong without the where (the message without its ``playbook ...,
channel ...:`` prefix); it defaults to the whole message. An error that gathers several
problems (every invalid fact of a fact sheet, every canonical fact a message lacks) carries
them as ``problems``, each an error of its own with its own fields; :meth:`each` gives them
with the outer error's fields filled in where theirs are empty. The outer error's own location
fields are those all its problems agree on (one invalid fact: its ``field``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict

LOCATION = ("playbook", "stage", "template", "channel", "locale", "field")
"""The fields that say where a problem is, from the playbook down to one field."""


class Location(TypedDict, total=False):
    """Location fields to pass on with ``**``: ``RenderError(text, **where, field="text")``."""

    playbook: str
    stage: str
    template: str
    channel: str
    locale: str
    field: str


class CrisisCommsError(Exception):
    """Base of every error the engine raises on purpose.

    Fields (keyword-only, each optional): ``playbook``; ``stage`` (a playbook stage, the
    "message" of lint's output); ``template`` (a template name, ``pb/stage/channel.part.loc.j2``);
    ``channel``; ``locale``; ``field`` (a fact path, a playbook key, a message part or a
    request field); ``values`` (the values at fault: unknown names, missing facts); ``reason``;
    ``problems``."""

    def __init__(
        self,
        message: str,
        /,
        *,
        playbook: str | None = None,
        stage: str | None = None,
        template: str | None = None,
        channel: str | None = None,
        locale: str | None = None,
        field: str | None = None,
        values: Iterable[str] = (),
        reason: str | None = None,
        problems: Iterable[CrisisCommsError] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.playbook = playbook
        self.stage = stage
        self.template = template
        self.channel = channel
        self.locale = locale
        self.field = field
        self.values = tuple(values)
        self.reason = message if reason is None else reason
        self.problems = tuple(problems)
        for name in LOCATION:  # a gathering error is where all its problems agree it is
            found = {getattr(p, name) for p in self.problems}
            if getattr(self, name) is None and len(found) == 1:
                setattr(self, name, found.pop())

    def __str__(self) -> str:
        return self.message

    def fields(self) -> dict[str, Any]:
        """Where the problem is: the location fields that are set, and ``values`` if any."""
        out: dict[str, Any] = {name: getattr(self, name) for name in LOCATION
                               if getattr(self, name) is not None}
        if self.values:
            out["values"] = list(self.values)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Everything, for machines (JSON): kind, message, the fields, reason, problems."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message,
                               **self.fields(), "reason": self.reason}
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems]
        return out

    def each(self) -> Iterator[CrisisCommsError]:
        """The problems one by one (this error itself when it gathers none), each with this
        error's location fields filled in where its own are empty."""
        if not self.problems:
            yield self
            return
        for problem in self.problems:
            located = copy.copy(problem)
            for name in LOCATION:
                if getattr(located, name) is None:
                    setattr(located, name, getattr(self, name))
            yield from located.each()


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


class IdentityError(CrisisCommsError):
    """Who is acting cannot be established: a signing key is missing, unreadable, not listed
    in the workspace or not allowed to sign what was asked."""


class IntakeError(CrisisCommsError):
    """An event refused at the door (``api/intake.py``): ``status`` is the HTTP answer (401
    unsigned/bad signature/expired/replayed, 400 not JSON, 422 a field, 413, 429), ``field``
    the request field at fault; nothing was stored or started."""

    def __init__(self, message: str, /, *, status: int, retry_after_s: float | None = None,
                 **fields: Any) -> None:
        super().__init__(message, **fields)
        self.status = status
        self.retry_after_s = retry_after_s
