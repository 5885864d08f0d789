"""The dashboard's people and the dashboard itself: ``users add|set|remove|list``,
``dashboard``.

Users live in the users file (``CRISISCOMMS_DASHBOARD_USERS_PATH``, default
``data/dashboard_users.toml``, mode 600): ids, roles, Argon2 password hashes, or the e-mail of a
single-sign-on account. A password is asked twice without echo, or read from standard input
(``--password-stdin``, for scripts); it is never printed, logged or put on a command line.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out, users_app

if TYPE_CHECKING:
    from crisiscomms.identity.users import UserStore

ROLES_HELP = "pr_lead, approver, support, executive or admin (repeat for several)"


def _store() -> tuple[UserStore, Path]:
    from crisiscomms.identity.users import UserStore

    settings = common.load_settings()
    path = settings.resolved_dashboard_users_path
    return common.run_or_exit(lambda: UserStore.load(path)), path


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def users_add(
    user_id: Annotated[str, typer.Argument(help="Identity id: the same as the person's approver "
                                                "key id (crisiscomms keys whoami)")],
    role: Annotated[list[str], typer.Option("--role", help=ROLES_HELP)],
    name: Annotated[str | None, typer.Option(help="The name shown (display only)")] = None,
    email: Annotated[str | None, typer.Option(
        help="Single sign-on (st.login): the account's verified e-mail; no password then")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input")] = False,
) -> None:
    """Add a person who may sign in to the dashboard."""
    store, path = _store()
    password = None if email and not password_stdin else _password(password_stdin)
    record = common.run_or_exit(lambda: store.add(user_id, display_name=name, roles=role,
                                                  password=password, email=email))
    out.print(f"added {record.id} ({', '.join(sorted(r.value for r in record.roles))}) to "
              f"{path}", highlight=False, soft_wrap=True)


@users_app.command("set")
def users_set(
    user_id: Annotated[str, typer.Argument(help="Identity id")],
    role: Annotated[list[str] | None, typer.Option("--role", help=ROLES_HELP)] = None,
    name: Annotated[str | None, typer.Option(help="The name shown")] = None,
    password: Annotated[bool, typer.Option("--password", help="Set a new password")] = False,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the new password from standard input")] = False,
) -> None:
    """Change a person's roles, name or password."""
    store, _ = _store()
    new = _password(password_stdin) if password or password_stdin else None
    record = common.run_or_exit(lambda: store.update(user_id, roles=role, password=new,
                                                     display_name=name))
    out.print(f"updated {record.id} ({', '.join(sorted(r.value for r in record.roles))})",
              highlight=False)


@users_app.command("remove")
def users_remove(user_id: Annotated[str, typer.Argument(help="Identity id")]) -> None:
    """Remove a person (their past actions stay in the audit trail)."""
    store, _ = _store()
    common.run_or_exit(lambda: store.remove(user_id))
    out.print(f"removed {user_id}", highlight=False)


@users_app.command("list")
def users_list() -> None:
    """Who may sign in, with their roles (never a hash)."""
    store, path = _store()
    table = Table("id", "name", "roles", "sign-in", title=str(path))
    for record in sorted(store.records.values(), key=lambda r: r.id):
        table.add_row(record.id, record.display_name,
                      ", ".join(sorted(r.value for r in record.roles)),
                      "password" if record.password_hash else f"single sign-on ({record.email})")
    out.print(table)


def dashboard_command(address: str, port: int) -> list[str]:
    """The Streamlit command line of the dashboard."""
    app_path = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app_path),
            "--server.headless", "true", "--server.port", str(port),
            "--server.address", address, "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer",
            # a table's own "download as CSV" writes customer text as it is (a tweet starting
            # with "=" runs as a formula): off; pages offer neutralised downloads instead
            "--client.disableDataExport", "true"]


@app.command()
def dashboard(
    address: Annotated[str, typer.Option(
        help="Address to bind (default loopback; put a TLS proxy in front to expose it)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8501,
) -> None:
    """Run the dashboard (sign-in with crisiscomms users add)."""
    import subprocess

    settings = common.load_settings()
    users = settings.resolved_dashboard_users_path
    if not users.exists():
        common.err.print(f"[yellow]note:[/] no users yet ({users}): add one with "
                         "crisiscomms users add ID --role pr_lead", highlight=False)
    out.print(f"dashboard: http://{address}:{port}/  (Ctrl-C to stop)", highlight=False)
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(dashboard_command(address, port), check=False)
