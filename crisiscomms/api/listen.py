"""The listening receivers: one FastAPI app (``crisiscomms listen``), binding 127.0.0.1.

=========================================  ================================================
``POST /v1/sendgrid/events``               SendGrid Event Webhook (JSON array, ECDSA signed)
``POST /v1/sendgrid/inbound``              SendGrid Inbound Parse (multipart, basic auth)
``POST /v1/tickets/zendesk``               Zendesk webhook (HMAC signed)
``POST /v1/tickets/freshdesk``             Freshdesk automation webhook (our HMAC header)
``GET|POST /v1/csat/{token}``              the one-click rating page (GET shows, POST votes)
``GET /healthz``                           liveness
=========================================  ================================================

Every POST is refused in this order, so a bad request costs little and changes nothing:
a declared ``Content-Length`` over the limit → 413; missing credentials → 401, a timestamp
outside the replay window or wrong basic auth → 403 (both from the headers alone, before a
byte of the body is read); a body that turns out longer than the limit while it streams →
413, cut at the cap; a signature that does not verify over the raw bytes → 403 (before they
are parsed); a malformed payload → 400 ``{"message", "field"}`` naming
the field; then the whole request is stored in one batch (``reactions/service.py``,
``reactions/sources/``) and a replay stores nothing new. Refusals are logged with their
reason, never with a secret, a signature or a body.

The domain does the work; this module only reads HTTP. Checks and parsing run in the thread
pool (so one slow request does not stall the event loop); reactions then go to one writer
thread that stores what concurrent requests hand it as one batch (``reactions/batching.py``:
one triage call, one INSERT, one commit for many replies). Event Webhook batches are already
batches and are stored by the request itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from crisiscomms.api.body import BadContentLength, BodyTooLarge, check_declared_length, read_capped
from crisiscomms.api.headers import SecurityHeadersMiddleware, page_headers
from crisiscomms.audience.models import Recipient
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.reactions import signatures as sig
from crisiscomms.reactions.batching import ReactionWriter
from crisiscomms.reactions.service import ReactionIn
from crisiscomms.reactions.sources import csat, inbound_parse, sendgrid_events, tickets
from crisiscomms.reactions.sources.payload import PayloadError
from crisiscomms.reactions.triage import Triager
from crisiscomms.reactions.triage.workspace import workspace_triager
from crisiscomms.statuspage.catalog import Catalog
from crisiscomms.statuspage.model import is_locale
from crisiscomms.statuspage.views import environment

log = logging.getLogger(__name__)
T = TypeVar("T")


def create_app(settings: Settings | None = None, *, triager: Triager | None = None) -> FastAPI:
    """The app; its database, secrets and limits come from ``settings``."""
    settings = settings or Settings()
    if settings.sendgrid_webhook_public_key:
        try:  # a bad key would refuse every event with 403: say so at start-up instead
            sig.load_sendgrid_public_key(settings.sendgrid_webhook_public_key)
        except ValueError as exc:
            raise CrisisCommsError(f"CRISISCOMMS_SENDGRID_WEBHOOK_PUBLIC_KEY: {exc}",
                                   field="sendgrid_webhook_public_key") from None
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    triage = triager or workspace_triager(settings)
    max_age = float(settings.webhook_max_age_s)
    app = FastAPI(title="crisiscomms listening receivers", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(SecurityHeadersMiddleware)

    async def guarded(request: Request, limit: int, handle: Callable[[bytes], T],
                      where: str, precheck: Callable[[], None] | None = None) -> T | Response:
        """Refuse what the headers already condemn (a declared length over ``limit``, then
        ``precheck``: missing or stale credentials) before reading a byte; then read (capped)
        and run ``handle`` (the signature over the body, parsing, storage) in the thread pool.
        Refusals become their status code."""
        try:
            check_declared_length(request, limit)
            if precheck is not None:
                precheck()
            body = await read_capped(request, limit)
            return await run_in_threadpool(handle, body)
        except BodyTooLarge:
            log.warning("%s: body over %d bytes refused", where, limit)
            return JSONResponse({"message": f"the body is over {limit} bytes"}, 413)
        except BadContentLength as exc:
            log.warning("%s: malformed: %s", where, exc)
            return JSONResponse({"message": str(exc), "field": exc.field}, 400)
        except sig.SignatureError as exc:
            log.warning("%s: refused (%d): %s", where, exc.status, exc.reason)
            return JSONResponse({"message": exc.reason}, exc.status)
        except PayloadError as exc:
            log.warning("%s: malformed: %s", where, exc)
            return JSONResponse({"message": str(exc), "field": exc.field}, 400)

    writer = ReactionWriter(lambda: session_scope(engine), triage)
    app.state.reaction_writer = writer

    def store(items: list[ReactionIn], *, replace: bool = False) -> dict[str, Any]:
        """Hand the reactions to the group-commit writer and wait for this request's share
        (called from the thread pool: the wait blocks a worker thread, not the loop)."""
        return writer.submit(items, replace=replace).result().as_dict()

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/sendgrid/events")
    async def sendgrid_event_webhook(request: Request) -> Response:
        signature = request.headers.get(sig.SENDGRID_SIGNATURE_HEADER)
        timestamp = request.headers.get(sig.SENDGRID_TIMESTAMP_HEADER)

        def handle(body: bytes) -> dict[str, Any]:
            sig.verify_sendgrid(settings.sendgrid_webhook_public_key, body, signature,
                                timestamp, max_age_s=max_age)
            events = sendgrid_events.parse_events(body)
            with session_scope(engine) as session:
                result = sendgrid_events.record_events(session, events)
            return {"received": result.received, "stored": result.stored,
                    "duplicates": result.duplicates, "confirmed": result.confirmed,
                    "suppressed": result.suppressed}

        def precheck() -> None:
            sig.check_sendgrid_headers(settings.sendgrid_webhook_public_key, signature,
                                       timestamp, max_age_s=max_age)

        answer = await guarded(request, settings.listen_max_body_bytes, handle,
                               "sendgrid events", precheck)
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    @app.post("/v1/sendgrid/inbound")
    async def sendgrid_inbound_parse(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        content_type = request.headers.get("content-type")
        password = settings.inbound_parse_password

        def precheck() -> None:  # credentials before the body: a stranger's upload is unread
            sig.verify_basic_auth(settings.inbound_parse_user,
                                  password.get_secret_value() if password else None,
                                  authorization)

        def handle(body: bytes) -> dict[str, Any]:
            form = inbound_parse.parse_form(content_type, body)
            item = inbound_parse.to_reaction(form, reply_domain=settings.reply_domain)
            return store([item])

        answer = await guarded(request, settings.inbound_max_body_bytes, handle,
                               "sendgrid inbound", precheck)
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    def ticket_route(desk: str, parse: Callable[[bytes], ReactionIn], secret: Any,
                     signature_header: str, timestamp_header: str) -> Any:
        async def receive(request: Request) -> Response:
            signature = request.headers.get(signature_header)
            timestamp = request.headers.get(timestamp_header)

            def handle(body: bytes) -> dict[str, Any]:
                sig.verify_hmac(secret.get_secret_value() if secret else None, body,
                                signature, timestamp, max_age_s=max_age, source=desk,
                                signature_header=signature_header,
                                timestamp_header=timestamp_header)
                return store([parse(body)])

            def precheck() -> None:
                sig.check_hmac_headers(secret.get_secret_value() if secret else None,
                                       signature, timestamp, max_age_s=max_age, source=desk,
                                       signature_header=signature_header,
                                       timestamp_header=timestamp_header)

            answer = await guarded(request, settings.listen_max_body_bytes, handle,
                                   f"{desk} ticket", precheck)
            return answer if isinstance(answer, Response) else JSONResponse(answer)
        return receive

    app.post("/v1/tickets/zendesk")(ticket_route(
        "Zendesk", tickets.zendesk_reaction, settings.zendesk_webhook_secret,
        sig.ZENDESK_SIGNATURE_HEADER, sig.ZENDESK_TIMESTAMP_HEADER))
    app.post("/v1/tickets/freshdesk")(ticket_route(
        "Freshdesk", tickets.freshdesk_reaction, settings.freshdesk_webhook_secret,
        sig.OUR_SIGNATURE_HEADER, sig.OUR_TIMESTAMP_HEADER))

    page_name = f"{settings.organization} Status"

    def csat_page(locale: str, status: int, *, message_key: str | None = None,
                  chosen: int | None = None) -> HTMLResponse:
        catalog = Catalog(locale if is_locale(locale) else "en")
        html = environment().get_template("csat.html.j2").render(
            locale=catalog.locale, page_name=page_name, page_url=settings.status_page_url,
            message=catalog(message_key) if message_key else "",
            question=catalog("csat.question"), ratings=list(csat.RATINGS), chosen=chosen,
            labels={n: catalog(f"csat.{n}") for n in csat.RATINGS},
            comment_label=catalog("csat.comment"), submit=catalog("csat.submit"),
            back=catalog("intake.back"))
        return HTMLResponse(html, status_code=status, headers=page_headers(html))

    def rater(token: str) -> tuple[csat.CsatToken, str, str] | None:
        """The token's ids, the recipient's address and locale; None for a bad link."""
        secret = settings.csat_secret
        read = csat.read_token(secret.get_secret_value(), token) if secret else None
        if read is None:
            return None
        with session_scope(engine) as session:
            row = session.get(Recipient, read.recipient_id)
            if row is None:
                return None
            return read, row.email, row.locale

    def unknown_link() -> HTMLResponse:
        catalog = Catalog("en")
        html = environment().get_template("intake.html.j2").render(
            locale="en", page_name=page_name, page_url=settings.status_page_url,
            message=catalog("intake.unknown_link"), back=catalog("intake.back"))
        return HTMLResponse(html, status_code=404, headers=page_headers(html))

    @app.get("/v1/csat/{token}")
    async def csat_form(token: str, rating: str | None = None) -> Response:
        """Shows the choice; never records (link scanners fetch every URL of an email)."""
        found = await run_in_threadpool(rater, token)
        if found is None:
            return unknown_link()
        chosen = int(rating) if rating and rating.isdigit() and int(rating) in csat.RATINGS \
            else None
        return csat_page(found[2], 200, chosen=chosen)

    @app.post("/v1/csat/{token}")
    async def csat_vote(token: str, request: Request) -> Response:
        found = await run_in_threadpool(rater, token)
        if found is None:
            return unknown_link()
        read, address, locale = found
        is_json = request.headers.get("content-type", "").startswith("application/json")

        def handle(body: bytes) -> dict[str, Any]:
            rating, comment = _rating_form(body, is_json)
            item = csat.rating_reaction(read, rating, comment, author=address)
            return store([item], replace=True)

        answer = await guarded(request, 16_384, handle, "csat")
        if isinstance(answer, Response):
            if answer.status_code == 400 and not is_json:
                return csat_page(locale, 400, message_key="csat.invalid_rating")
            return answer
        if is_json:
            return JSONResponse(answer)
        return csat_page(locale, 200, message_key="csat.thanks")

    return app


def _rating_form(body: bytes, is_json: bool) -> tuple[int, str]:
    """``rating`` (1-5) and ``comment`` of the rating form (urlencoded or JSON)."""
    values: dict[str, Any]
    try:
        if is_json:
            import orjson

            data = orjson.loads(body or b"{}")
            values = data if isinstance(data, dict) else {}
        else:
            values = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
    except (ValueError, UnicodeDecodeError):
        raise PayloadError("the rating form is unreadable", field="body") from None
    raw = values.get("rating")
    rating = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else None
    if rating is None or rating not in csat.RATINGS:
        raise PayloadError("rating must be a whole number from 1 to 5", field="rating")
    comment = values.get("comment") or ""
    if not isinstance(comment, str):
        raise PayloadError("comment must be text", field="comment")
    return rating, comment
