"""``crisiscomms listen``: serve the listening receivers (provider events, replies, tickets,
CSAT ratings) with uvicorn; see docs/listening.md for pointing each provider at it."""

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
) -> None:
    """Serve the listening receivers: SendGrid events and replies, tickets, CSAT ratings."""
    import uvicorn

    from crisiscomms.api.listen import create_app

    settings = common.load_settings()
    application = common.run_or_exit(lambda: create_app(settings))
    out.print(f"listening: http://{host}:{port}/  (POST /v1/sendgrid/events, "
              "/v1/sendgrid/inbound, /v1/tickets/zendesk, /v1/tickets/freshdesk; "
              "GET|POST /v1/csat/<token>)", highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")
