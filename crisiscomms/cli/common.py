"""What every command group shares: the Typer apps, the consoles, error handling, settings.

Errors the engine raises on purpose are printed as one clear line on stderr with exit code 2;
nothing half-done is left behind because the engine checks before it writes. A command that
needs a workspace gets it through :func:`load_settings`, which refuses outside one (the same way).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Engine

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings

if TYPE_CHECKING:
    from crisiscomms.identity.identities import Identity
    from crisiscomms.identity.keys import KeyRegistry

app = typer.Typer(help="Crisis communications: playbooks, approved templates, coordinated "
                       "publishing.", no_args_is_help=True, pretty_exceptions_enable=False)
templates_app = typer.Typer(help="Approve and inspect pre-approved templates.",
                            no_args_is_help=True)
app.add_typer(templates_app, name="templates")
keys_app = typer.Typer(help="Approvers' signing keys: who is acting, and their public keys.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
maintenance_app = typer.Typer(help="Scheduled maintenance on the status page.",
                              no_args_is_help=True)
app.add_typer(maintenance_app, name="maintenance")
statuspage_app = typer.Typer(help="The public status page (static site).", no_args_is_help=True)
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(statuspage_app, name="statuspage")
recipients_app = typer.Typer(help="Recipients: import and validate.", no_args_is_help=True)
app.add_typer(recipients_app, name="recipients")
reactions_app = typer.Typer(help="Reactions: score, correct, train, watch.", no_args_is_help=True)
app.add_typer(reactions_app, name="reactions")
users_app = typer.Typer(help="Who may sign in to the dashboard, with which roles.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")
WORKSPACE_VARIABLE = "CRISISCOMMS_WORKSPACE"


@app.callback()
def _main(
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", metavar="DIR",
        help="The workspace to use (default: CRISISCOMMS_WORKSPACE, else the nearest folder "
             "holding crisiscomms.toml from the current directory up)")] = None,
) -> None:
    """Crisis communications: playbooks, approved templates, coordinated publishing."""
    if workspace is not None:
        # Named for this process and what it starts (flows, the dashboard); Settings reads it.
        os.environ[WORKSPACE_VARIABLE] = str(workspace.expanduser().absolute())


def run_or_exit(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except CrisisCommsError as exc:
        # escaped: a typed name or a template's text is data, never console markup
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        err.print(f"[bold red]configuration error:[/] {escape(validation_message(exc))}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def validation_message(exc: ValidationError) -> str:
    """Each problem as ``field: reason``, never the value given (it may be a secret: pydantic's
    own text quotes every input)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or exc.title}: "
        f"{error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors(include_input=False, include_url=False))


def serve_asgi(application: Any, *, host: str, port: int) -> None:
    """Serve an ASGI app with uvicorn until stopped, its start-up objects frozen out of the
    garbage collector's full passes first (``core/runtime.py``: they were the API's p99)."""
    import uvicorn

    from crisiscomms.core.runtime import freeze_startup_heap

    freeze_startup_heap()
    uvicorn.run(application, host=host, port=port, log_level="warning")


def load_settings() -> Settings:
    return run_or_exit(Settings)


def key_registry(settings: Settings) -> KeyRegistry:
    """The workspace's approvers (``templates/_approvers/``)."""
    from crisiscomms.identity.keys import KeyRegistry

    return KeyRegistry.for_templates(settings.templates_dir)


def identity(settings: Settings, display_name: str | None = None) -> Identity:
    """Who is at this CLI (the listed key they hold, else their OS account); a typed ``--by``
    is only the name shown."""
    from crisiscomms.identity.keys import current_identity

    return run_or_exit(lambda: current_identity(settings, key_registry(settings), display_name))


def open_engine(settings: Settings) -> Engine:
    """The configured database, with its tables created if they are not there yet."""
    from crisiscomms.core.database import init_db, make_engine

    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    return engine


def _prefect_defaults() -> None:
    """Prefect's own settings, before Prefect is first imported: no phoning home, a quiet
    console, and time for its temporary server to start on a busy machine or on the first run
    after an install (Python compiles Prefect's modules then): 20 s is Prefect's default."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def listen_app(settings: Settings, triager: Any) -> Any:
    """The listening app (``crisiscomms listen``'s), for a drill's reacting crowd."""
    from crisiscomms.api.listen import create_app

    return create_app(settings, triager=triager)


def sms_app(settings: Settings) -> Any:
    """The SMS app (``crisiscomms sms serve``'s), for a drill's status callbacks."""
    from crisiscomms.api.sms import create_app

    return create_app(settings)


def publish(incident_ref: str, stage: str) -> Mapping[str, Any]:
    _prefect_defaults()
    from crisiscomms.flows.run_playbook import run_stage

    return run_stage(incident_ref, stage)


def print_publish(result: Mapping[str, Any]) -> None:
    """The per-channel table, then every failure on stderr; exit 1 when anything failed or
    was held back behind a status page that is not published."""
    held = result.get("held") or []
    columns = ("sent", "failed", "skipped", *(("held",) if held else ()))
    table = Table("channel", *columns, title=f"{result['incident_ref']} · {result['stage']}")
    for channel, c in result["channels"].items():
        table.add_row(channel, *(str(c.get(name, 0)) for name in columns))
    out.print(table)
    for line in result.get("errors", []):
        err.print(f"[red]failed:[/] {line}", highlight=False, soft_wrap=True)
    for hold in held:
        waiting = ", ".join(f"{channel} ({n})" for channel, n in hold["held"].items())
        err.print(f"[red]held:[/] stage {hold['stage']}: {waiting} not sent, still planned; "
                  f"once the {hold['channel'].replace('_', ' ')} can be published: "
                  f"crisiscomms resume {hold['incident_ref']}", highlight=False, soft_wrap=True)
    if result.get("errors") or held:
        raise typer.Exit(1)


def run_resume(incident_ref: str, stale_after_s: float | None) -> Mapping[str, Any]:
    _prefect_defaults()
    from crisiscomms.flows.run_playbook import run_resume

    return run_resume(incident_ref, stale_after_s=stale_after_s)


def print_reconciled(result: Mapping[str, Any]) -> None:
    r = result.get("reconciled") or {}
    out.print(f"reconciled rows left sending: {r.get('confirmed', 0)} confirmed by the provider "
              f"(not resent), {r.get('requeued', 0)} re-queued, {r.get('unconfirmed', 0)} "
              f"unconfirmed (check, then retry --unconfirmed), {r.get('still_sending', 0)} "
              "provider not reachable (run resume again)")
    for line in r.get("errors", []):
        err.print(f"[yellow]reconcile:[/] {line}", highlight=False)
    for hold in result.get("first_requeued") or []:
        out.print(f"{hold['channel'].replace('_', ' ')} of stage {hold['stage']} re-queued "
                  f"(it had failed: {hold['reason']}); what waited behind it follows once it "
                  "is published", highlight=False, soft_wrap=True)

