"""``crisiscomms api``: serve the intake API (events in); ``crisiscomms dispatch``: start the
flows of accepted events, alone (docs/intake.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from crisiscomms.core.settings import Settings


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to bind (put a TLS proxy in front of it "
                                           "for senders on other machines)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8050,
    dispatch: Annotated[bool, typer.Option(
        "--dispatch/--no-dispatch",
        help="Also start the flows of accepted events from this process (--no-dispatch: "
             "several API processes, one `crisiscomms dispatch`)")] = True,
) -> None:
    """Serve the intake API: POST /v1/events (ours, Standard Webhooks signed) and
    /v1/events/{alertmanager,pagerduty,grafana,recall}/SOURCE; the OpenAPI at /docs."""
    from crisiscomms.api.intake import create_app

    settings = common.load_settings()
    engine = common.open_engine(settings)
    loop = _outbox_loop(settings, engine) if dispatch else None
    application = common.run_or_exit(lambda: create_app(
        settings, engine=engine, on_stored=loop.wake if loop else None))
    out.print(f"intake API: http://{host}:{port}/  (POST /v1/events, "
              "/v1/events/<kind>/<source>; OpenAPI at /docs)", highlight=False)
    if loop is not None:
        out.print(f"accepted events start flows: {_how(settings)}", highlight=False)
        loop.start()
    try:
        common.serve_asgi(application, host=host, port=port)
    finally:
        if loop is not None:
            loop.stop()


@app.command("dispatch")
def dispatch_cmd() -> None:
    """Start the flows of accepted events (the outbox) until stopped: for API processes run
    with --no-dispatch."""
    import signal
    import threading

    settings = common.load_settings()
    engine = common.open_engine(settings)
    loop = _outbox_loop(settings, engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    out.print(f"dispatching accepted events: {_how(settings)}", highlight=False)
    loop.start()
    stop.wait()
    loop.stop()


def _how(settings: Settings) -> str:
    if settings.intake_dispatch == "prefect":
        return f"runs of the Prefect deployment {settings.intake_deployment}"
    return "in this process (intake_dispatch=inline)"


def _outbox_loop(settings: Settings, engine: Engine) -> Any:
    from crisiscomms.flows.dispatch import make_outbox_loop

    return common.run_or_exit(lambda: make_outbox_loop(settings, engine))
