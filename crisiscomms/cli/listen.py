"""``crisiscomms listen``: serve the listening receivers (provider events, replies, tickets,
CSAT ratings) with uvicorn, and poll X mentions and replies beside them; see
docs/listening.md for pointing each provider at it."""

from __future__ import annotations

from typing import Annotated

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out


@app.command()
def listen(
    host: Annotated[str, typer.Option(help="Address to bind (put a TLS proxy in front of it "
                                           "for providers on the internet)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8040,
    poll_x: Annotated[bool, typer.Option(
        "--x/--no-x", help="Also poll X mentions and replies (when X is configured)")] = True,
) -> None:
    """Serve the listening receivers: SendGrid events and replies, tickets, CSAT ratings; and
    poll X mentions and replies every x_poll_interval_s (rate limits honoured)."""
    import threading

    from crisiscomms.api.listen import create_app
    from crisiscomms.reactions.sources.x_mentions import run_x_poller
    from crisiscomms.reactions.triage.workspace import workspace_triager

    settings = common.load_settings()
    triager = common.run_or_exit(lambda: workspace_triager(settings))
    application = common.run_or_exit(lambda: create_app(settings, triager=triager))
    out.print(f"listening: http://{host}:{port}/  (POST /v1/sendgrid/events, "
              "/v1/sendgrid/inbound, /v1/tickets/zendesk, /v1/tickets/freshdesk; "
              "GET|POST /v1/csat/<token>)", highlight=False)
    stop = threading.Event()
    poller = None
    if poll_x and (settings.x_bearer_token is not None or settings.x_consumer_key is not None):
        engine = common.open_engine(settings)
        poller = threading.Thread(target=run_x_poller, args=(engine, settings),
                                  kwargs={"stop": stop, "triager": triager},
                                  name="x-poller", daemon=True)
        poller.start()
        out.print(f"polling X mentions and replies every {settings.x_poll_interval_s:g} s",
                  highlight=False)
    try:
        common.serve_asgi(application, host=host, port=port)
    finally:
        stop.set()
        if poller is not None:
            poller.join(timeout=10)
