"""The SMS app: what Twilio posts back (``crisiscomms sms serve``), binding 127.0.0.1.

=============================  =========================================================
``POST /v1/sms/inbound``       a text to our number ("A message comes in" webhook): STOP
                               and its synonyms opt the number out, START opts it back in,
                               HELP is answered (TwiML) from ``templates/_sms/help.<locale>.j2``
``POST /v1/sms/status``        a message's status callback (``?key=<ledger key>&r=<id>``,
                               set by the SMS channel): stored once in the ledger's events
``GET /healthz``               liveness
=============================  =========================================================

Every POST is refused in this order and changes nothing when refused: a declared body over
``MAX_BODY`` → 413; no ``X-Twilio-Signature`` → 403; a signature that does not verify (the
SDK's ``RequestValidator``: HMAC-SHA1 under the auth token of the public URL Twilio called,
``sms_url`` + path + query, and the sorted form parameters) → 403; a form without the fields
Twilio always sends → 400 naming the field. Refusals are logged with their reason, never with
the token, the signature or the body. The keywords are Twilio's (its Advanced Opt-Out blocks
a number that sent STOP on its side too; this keeps our ledger from planning it at all).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jinja2 import TemplateNotFound
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from crisiscomms.channels.twilio_sms import TwilioSMSChannel
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery import sms_events

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
"""Twilio's form posts are a few hundred bytes (a 1,600-character body at most)."""
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _twiml(text: str | None) -> Response:
    body = EMPTY_TWIML if not text else (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        f"{escape(text)}</Message></Response>")
    return Response(body, media_type="application/xml")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its database, auth token and public URL come from ``settings``."""
    settings = settings or Settings()
    if settings.twilio_auth_token is None:
        raise CrisisCommsError("the SMS app needs CRISISCOMMS_TWILIO_AUTH_TOKEN to verify "
                               "Twilio's signatures", field="twilio_auth_token")
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    public = settings.sms_url.rstrip("/") if settings.sms_url else None
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    app = FastAPI(title="crisiscomms SMS", docs_url=None, redoc_url=None, openapi_url=None)

    async def verified(request: Request, where: str) -> dict[str, str] | Response:
        """The form Twilio posted, or the refusal (413, 403) to answer."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse({"message": f"the body is over {MAX_BODY} bytes"}, 413)
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            log.warning("%s: refused (403): no X-Twilio-Signature", where)
            return JSONResponse({"message": "X-Twilio-Signature is required"}, 403)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"message": f"the body is over {MAX_BODY} bytes"}, 413)
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
        url = str(request.url)
        if public is not None:  # behind a proxy: the URL Twilio called, not the one we see
            query = request.url.query
            url = public + request.url.path + (f"?{query}" if query else "")
        if not validator.validate(url, form, signature):
            log.warning("%s: refused (403): signature does not verify", where)
            return JSONResponse({"message": "X-Twilio-Signature does not verify"}, 403)
        return form

    def missing(form: dict[str, str], *names: str) -> Response | None:
        for name in names:
            if not form.get(name):
                return JSONResponse({"message": f"{name} is required", "field": name}, 400)
        return None

    @app.post("/v1/sms/inbound")
    async def inbound(request: Request) -> Response:
        form = await verified(request, "sms inbound")
        if isinstance(form, Response):
            return form
        refused = missing(form, "From", "Body")
        if refused is not None:
            return refused
        return await run_in_threadpool(_inbound, form)

    def _inbound(form: dict[str, str]) -> Response:
        sender, word = form["From"], form.get("OptOutType") or sms_events.keyword(form["Body"])
        with session_scope(engine) as session:
            if word == "STOP":
                count = sms_events.opt_out(session, sender)
                log.info("sms: STOP from a number of %d recipient(s)", count)
                return _twiml(None)  # Twilio confirms the opt-out itself
            if word == "START":
                sms_events.opt_in(session, sender)
                return _twiml(None)
            if word == "HELP":
                locale = sms_events.recipient_locale(session, sender) or "en"
            else:
                return _twiml(None)  # a reply that is not a keyword: nothing is said back
        try:
            return _twiml(sms_events.help_reply(settings.templates_dir, locale=locale,
                                                organization=settings.organization))
        except (CrisisCommsError, TemplateNotFound) as exc:
            log.warning("sms: HELP not answered by us (%s); Twilio's own answer stands", exc)
            return _twiml(None)

    @app.post("/v1/sms/status")
    async def status(request: Request) -> Response:
        form = await verified(request, "sms status")
        if isinstance(form, Response):
            return form
        refused = missing(form, "MessageSid", "MessageStatus")
        if refused is not None:
            return refused
        key = request.query_params.get("key")
        if not key:
            return JSONResponse({"message": "key is required", "field": "key"}, 400)
        if form["MessageStatus"] not in sms_events.STATUSES:
            return JSONResponse({"message": f"unknown MessageStatus {form['MessageStatus']!r}",
                                 "field": "MessageStatus"}, 400)
        rid = request.query_params.get("r", "")
        callback = sms_events.StatusCallback(
            key=key, recipient_id=int(rid) if rid.isdigit() else None,
            message_sid=form["MessageSid"], status=form["MessageStatus"],
            to=form.get("To") or None, error_code=form.get("ErrorCode") or None)

        def store() -> None:
            with session_scope(engine) as session:
                sms_events.record_status(session, callback, channel=TwilioSMSChannel.name)
        await run_in_threadpool(store)
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
