"""The public status page: serve it, build it, schedule maintenance; subscriptions."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, maintenance_app, out, statuspage_app
from crisiscomms.core.settings import Settings


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8030,
) -> None:
    """Serve the generated status page locally (any static host can serve it too)."""
    from crisiscomms.statuspage.server import serve_status_page

    settings = common.load_settings()
    server = serve_status_page(settings.resolved_status_page_dir / "site", port=port,
                               subscriptions_url=settings.subscriptions_url)
    out.print(f"status page: http://127.0.0.1:{server.server_port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


def _status_page(settings: Settings) -> Any:
    from crisiscomms.channels.status_page import build_status_page

    return build_status_page(settings)


def _aware(value: str, option: str) -> Any:
    from crisiscomms.statuspage.maintenances import parse_window_time

    return parse_window_time(value, option)


@maintenance_app.command("schedule")
def maintenance_schedule(
    name: Annotated[str, typer.Option(help="What the maintenance is, as readers see it")],
    components: Annotated[str, typer.Option(help="Comma-separated component names")],
    start: Annotated[str, typer.Option(help="Start, ISO 8601 with offset")],
    end: Annotated[str, typer.Option(help="End, ISO 8601 with offset")],
    body: Annotated[str | None, typer.Option(help="Announcement text (default: standard)")]
    = None,
) -> None:
    """Announce a maintenance window; it moves scheduled → in_progress → completed by time
    at every build (``crisiscomms statuspage build``, or any update)."""
    from crisiscomms.core.errors import FactsError

    settings = common.load_settings()
    names = [c.strip() for c in components.split(",") if c.strip()]

    def schedule() -> str:
        try:
            page = _status_page(settings)
            maintenance_id: str = page.schedule_maintenance(
                name=name, components=names, start=_aware(start, "--start"),
                end=_aware(end, "--end"), body=body)
        except ValueError as exc:
            raise FactsError(str(exc)) from None
        return maintenance_id

    maintenance_id = common.run_or_exit(schedule)
    out.print(f"maintenance {maintenance_id} scheduled: {name} ({', '.join(names)}), "
              f"{start} to {end}")


@statuspage_app.command("build")
def statuspage_build() -> None:
    """Rebuild and publish the status page from its own state (run it from cron: maintenance
    windows start and end with the clock). Needs neither the database nor Prefect."""
    settings = common.load_settings()
    build = common.run_or_exit(lambda: _status_page(settings).rebuild())
    out.print(f"status page published: {build}")


@statuspage_app.command("repair")
def statuspage_repair() -> None:
    """Remove from the status page's state the characters it cannot show (control
    characters, bidi overrides: text stored before facts were checked for them), then publish."""
    settings = common.load_settings()
    repaired = common.run_or_exit(lambda: _status_page(settings).repair())
    for path in repaired:
        out.print(f"repaired: {path}", highlight=False)
    out.print(f"status page published; {len(repaired)} text(s) repaired")


@app.command()
def subscriptions(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8040,
) -> None:
    """Serve the status page's subscribe endpoint (POST /v1/subscribe, confirm, unsubscribe)."""
    from crisiscomms.api.subscriptions import create_app

    settings = common.load_settings()
    out.print(f"subscriptions: http://127.0.0.1:{port}/v1/subscribe")
    # start-up's objects (~160,000) frozen out of full collections, which took 0.1-0.25 s
    # under a crowd (no request answered meanwhile): docs/status_page.md
    common.serve_asgi(create_app(settings), host="127.0.0.1", port=port)

