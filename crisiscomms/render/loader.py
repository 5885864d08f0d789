"""The checking loader: every template Jinja loads, at any depth, is the approved text.

Jinja loads a template through its environment's loader for the template a stage renders and
for everything that template pulls in at render time: ``{% include %}``, ``{% import %}``,
``{% from ... import %}`` and ``{% extends %}``, at any depth. :class:`CheckingLoader` is that
loader. Its :meth:`~CheckingLoader.get_source` reads the file **once**, hashes that text, asks the
approval lock whether that hash is the approved one for that template name (an
:class:`~crisiscomms.core.errors.ApprovalError` naming the template, the included one, when it
is not), and returns the very string it hashed, which Jinja then compiles: there is no second
read that could differ from the one checked.

A compiled template stays in Jinja's cache only while it is still what is on disk: the
environment runs with ``auto_reload``, so each use of a cached template calls the
``uptodate`` function returned here, which reads and hashes the file again and asks the lock
again; anything changed is loaded afresh (and refused if it is not approved).

Every load, compiled or from the cache, is recorded: inside :meth:`CheckingLoader.recording`
the caller gets the ``{template name: sha256}`` of everything Jinja loaded, so a message's
template hashes, and with them its content hash and the bundle hash, cover the partials too.

Without a lock (lint's structure checks, tests of the sandbox) the loader still reads once,
hashes and records; it only skips the approval check.

Hashes are of the file's text as UTF-8 with universal newlines (``\\r\\n`` and ``\\r`` read as
``\\n``): what :meth:`ApprovalLock.source_hash` hashes when a template is approved, and what
Jinja's lexer sees anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from jinja2 import BaseLoader, Environment, TemplateNotFound, meta
from jinja2.loaders import split_template_path

from crisiscomms.core.errors import CrisisCommsError, RenderError
from crisiscomms.render.approvals import ApprovalLock, sha256_text

_RECORDINGS: ContextVar[tuple[tuple[CheckingLoader, dict[str, str]], ...]] = ContextVar(
    "crisiscomms_template_recordings", default=())
"""The open recordings of this thread or task: (loader, what it loaded), innermost last."""


def template_key(name: str) -> str:
    """The lock's name of a template Jinja asks for (``./a//b.j2`` → ``a/b.j2``); a name that
    leaves the templates folder or enters a hidden one (``.approved/``) is not a template."""
    pieces = split_template_path(name)  # TemplateNotFound on ".."
    if not pieces or any(piece.startswith(".") for piece in pieces):
        raise TemplateNotFound(name)
    return "/".join(pieces)


def read_template(templates_dir: Path, name: str) -> str:
    """A template's text, read once: UTF-8 with universal newlines."""
    path = templates_dir.joinpath(*template_key(name).split("/"))
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise TemplateNotFound(name) from None
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}"
        raise RenderError(f"template {name} {reason}", template=name, reason=reason) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise RenderError(f"template {name} {reason}", template=name, reason=reason) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


class CheckingLoader(BaseLoader):
    """Loads ``templates_dir/<name>``, refusing any text ``approvals`` has not approved."""

    def __init__(self, templates_dir: Path, approvals: ApprovalLock | None = None) -> None:
        self.templates_dir = templates_dir
        self.approvals = approvals
        self._compiled: dict[str, tuple[str, str]] = {}
        """Template name → (sha256, text) of the last text handed to Jinja to compile."""

    def _digest(self, name: str, source: str) -> str:
        """The text's hash, once the lock has approved it for ``name`` (if there is a lock)."""
        if self.approvals is None:
            return sha256_text(source)
        return self.approvals.check(name, source)  # ApprovalError naming the template

    def _note(self, name: str, digest: str) -> None:
        for loader, loaded in _RECORDINGS.get():
            if loader is self:
                loaded[name] = digest

    def get_source(self, environment: Environment, template: str
                   ) -> tuple[str, str | None, Callable[[], bool]]:
        name = template_key(template)
        source = read_template(self.templates_dir, name)
        digest = self._digest(name, source)
        self._compiled[name] = (digest, source)
        self._note(name, digest)

        def uptodate() -> bool:
            """Still the approved text that was compiled? (called on every cached use)"""
            try:
                if self._digest(name, read_template(self.templates_dir, name)) != digest:
                    return False
            except (TemplateNotFound, CrisisCommsError):
                return False  # loaded again: refused there, with the reason
            self._note(name, digest)
            return True

        return source, str(self.templates_dir / name), uptodate

    def compiled(self, name: str) -> tuple[str, str]:
        """(sha256, text) that ``name`` was last compiled from: the checked text itself, never a
        second read (KeyError when Jinja has not loaded it through this loader)."""
        return self._compiled[template_key(name)]

    @contextmanager
    def recording(self) -> Iterator[dict[str, str]]:
        """``{name: sha256}`` of every template loaded through this loader inside the block,
        compiled afresh or reused from Jinja's cache, at any depth."""
        loaded: dict[str, str] = {}
        token = _RECORDINGS.set((*_RECORDINGS.get(), (self, loaded)))
        try:
            yield loaded
        finally:
            _RECORDINGS.reset(token)


def referenced_templates(environment: Environment, source: str) -> tuple[set[str], bool]:
    """The templates a template's text names in ``include``, ``import``, ``from`` and
    ``extends``, and whether it also loads one whose name is only known at render time."""
    found: set[str] = set()
    dynamic = False
    for name in meta.find_referenced_templates(environment.parse(source)):
        if name is None:
            dynamic = True
        else:
            found.add(name)
    return found, dynamic
