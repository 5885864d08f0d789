"""The status page's subscribe endpoint: a tiny FastAPI app (``crisiscomms subscriptions``).

``POST /v1/subscribe`` (the page's form, ``application/x-www-form-urlencoded``, or JSON
``{"email", "components", "locale"}``), ``GET /v1/confirm/<token>``,
``GET|POST /v1/unsubscribe/<token>`` (POST for RFC 8058 one-click). A form gets a small page
in the reader's language, a JSON client gets JSON. Bad input gets a 400 with a plain message
(JSON: ``{"message", "field", "values"}``, the field and values read from the
:class:`~crisiscomms.audience.subscriptions.SubscriptionError`), an unknown link a 404 page;
never a stack trace. Every accepted request gets the same answer,
so the endpoint does not tell who is subscribed.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from crisiscomms.audience import subscriptions as subs
from crisiscomms.audience.models import Recipient
from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.statuspage.catalog import Catalog
from crisiscomms.statuspage.model import is_locale
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.statuspage.views import environment

log = logging.getLogger(__name__)
MAX_BODY = 16_384


def _known_components(settings: Settings) -> list[str]:
    page = StatusPage(settings.resolved_status_page_dir, page_name="-",
                      page_url=settings.status_page_url)
    try:
        return list(page.load()["components"])
    except (OSError, ValueError):
        return []


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its database, email channel and URLs come from ``settings``."""
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    base = (settings.subscriptions_url or "http://127.0.0.1:8040").rstrip("/")
    page_name = f"{settings.organization} Status"
    app = FastAPI(title="crisiscomms status page subscriptions", docs_url=None,
                  redoc_url=None, openapi_url=None)

    def page(message_key: str, locale: str, status: int, **values: Any) -> HTMLResponse:
        catalog = Catalog(locale if is_locale(locale) else "en")
        html = environment().get_template("intake.html.j2").render(
            locale=catalog.locale, page_name=page_name, page_url=settings.status_page_url,
            message=catalog(message_key, **values), back=catalog("intake.back"))
        return HTMLResponse(html, status_code=status)

    def answer(is_form: bool, key: str, locale: str, status: int, *,
               error: CrisisCommsError | None = None, **values: Any) -> Response:
        if is_form:
            return page(key, locale, status, **values)
        body = {"message": Catalog("en")(key, **values), **(error.fields() if error else {})}
        return JSONResponse(body, status_code=status)

    @app.post("/v1/subscribe")
    async def subscribe(request: Request) -> Response:
        raw = await request.body()
        is_json = request.headers.get("content-type", "").startswith("application/json")
        locale = "en"
        if len(raw) > MAX_BODY:
            return answer(not is_json, "intake.invalid_email", locale, 413)
        try:
            if is_json:
                data = json.loads(raw or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                email = str(data.get("email") or "")
                comps = data.get("components") or []
                components = [str(c) for c in comps] if isinstance(comps, list) else \
                    str(comps).split(",")
                locale = str(data.get("locale") or "en")
            else:
                form = parse_qs(raw.decode("utf-8"), keep_blank_values=False)
                email = (form.get("email") or [""])[0]
                components = form.get("components", [])
                locale = (form.get("locale") or ["en"])[0]
        except (ValueError, UnicodeDecodeError):
            return answer(not is_json, "intake.invalid_email", "en", 400)
        locale = locale if is_locale(locale) else "en"
        try:
            with session_scope(engine) as session:
                result = subs.subscribe(session, email=email, components=components,
                                        locale=locale,
                                        known_components=_known_components(settings))
                address = subs.normalise_email(email)
        except subs.SubscriptionError as exc:
            if exc.field == "components":
                return answer(not is_json, "intake.unknown_components", locale, 400, error=exc,
                              components=", ".join(exc.values))
            return answer(not is_json, "intake.invalid_email", locale, 400, error=exc)
        if result.confirm_token is not None:
            _send(result, address, locale)
        return answer(not is_json, "intake.check_inbox", locale, 202)

    def _send(result: subs.SubscribeResult, address: str, locale: str) -> None:
        token = result.confirm_token
        assert token is not None
        with session_scope(engine) as session:
            row = session.get(Recipient, result.recipient_id)
            unsubscribe_token = row.unsubscribe_token if row else None
            components = (row.components or "").split(",") if row and row.components else []
        channel = SendGridEmailChannel.from_settings(settings)  # None without a key
        outcome = "email channel not configured"
        if channel is not None and unsubscribe_token:
            try:
                message = subs.confirmation_message(
                    settings.templates_dir, channel=channel.name, locale=locale,
                    organization=settings.organization,
                    page_name=page_name, confirm_url=f"{base}/v1/confirm/{token}",
                    unsubscribe_url=f"{base}/v1/unsubscribe/{unsubscribe_token}",
                    components=components)
                sent = subs.send_confirmation(channel, message, result.recipient_id, address,
                                              organization=settings.organization, token=token)
                outcome = "" if sent.outcome == "sent" else f"{sent.outcome}: {sent.reason}"
            except (CrisisCommsError, ValueError, OSError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
        if outcome:  # let the next request resend at once
            log.warning("subscription confirmation for recipient %s not sent: %s",
                        result.recipient_id, outcome)
            with session_scope(engine) as session:
                row = session.get(Recipient, result.recipient_id)
                if row is not None:
                    row.confirm_sent_at = None

    @app.get("/v1/confirm/{token}")
    def confirm(token: str) -> Response:
        with session_scope(engine) as session:
            row = subs.confirm(session, token)
            locale = row.locale if row else "en"
        if row is None:
            return page("intake.unknown_link", "en", 404)
        return page("intake.confirmed", locale, 200)

    @app.api_route("/v1/unsubscribe/{token}", methods=["GET", "POST"])
    def unsubscribe(token: str) -> Response:
        with session_scope(engine) as session:
            row = subs.unsubscribe(session, token)
            locale = row.locale if row else "en"
        if row is None:
            return page("intake.unknown_link", "en", 404)
        return page("intake.unsubscribed", locale, 200)

    return app
