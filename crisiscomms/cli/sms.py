"""``crisiscomms sms serve|release``: the SMS app (Twilio's inbound replies and status
callbacks) and sending the SMS that waited out their recipients' quiet hours."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out

sms_app = typer.Typer(help="SMS: Twilio's callbacks (STOP/HELP, delivery status) and "
                           "quiet-hours deferrals.", no_args_is_help=True)
app.add_typer(sms_app, name="sms")


@sms_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (put a TLS proxy in front of it "
                                           "for Twilio on the internet)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8045,
) -> None:
    """Serve the SMS app: POST /v1/sms/inbound (the number's "a message comes in" webhook:
    STOP, START, HELP) and /v1/sms/status (delivery status callbacks), both verified with
    X-Twilio-Signature. Set CRISISCOMMS_SMS_URL to its public URL."""
    from crisiscomms.api.sms import create_app

    settings = common.load_settings()
    application = common.run_or_exit(lambda: create_app(settings))
    out.print(f"SMS app: http://{host}:{port}/  (POST /v1/sms/inbound, /v1/sms/status)",
              highlight=False)
    common.serve_asgi(application, host=host, port=port)


@sms_app.command("release")
def release() -> None:
    """Send every SMS whose recipient's quiet hours have ended (rows ``deferred`` until now):
    run it every few minutes (cron, a Prefect schedule)."""
    from sqlalchemy import select
    from sqlmodel import col

    from crisiscomms.core.database import session_scope
    from crisiscomms.delivery.ledger import release_deferred
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.incident.models import Incident

    settings = common.load_settings()
    engine = common.open_engine(settings)
    with session_scope(engine) as session:
        ids = release_deferred(session)
        refs = sorted(session.execute(
            select(col(Incident.ref)).distinct()
            .join(Delivery, col(Delivery.incident_id) == col(Incident.id))
            .where(col(Delivery.id).in_(ids))).scalars()) if ids else []
    out.print(f"released {len(ids)} deferred row(s) of {len(refs)} incident(s)")
    for ref in refs:
        result = common.run_or_exit(partial(common.run_resume, str(ref), None))
        common.print_publish({**result, "stage": "release"})
