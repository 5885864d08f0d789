"""The status page's subscribe endpoint: a small FastAPI app (``crisiscomms subscriptions``).

=====================================  ==========================================================
``POST /v1/subscribe``                 the page's form (urlencoded) or JSON
                                       ``{"email", "components", "locale"}`` → 202
``GET /v1/confirm/{token}``            a page with a button; changes nothing (mail scanners
                                       open every link)
``POST /v1/confirm/{token}``           the button: confirms (once; the link expires after 48 h)
``GET /v1/unsubscribe/{token}``        a page with a button; changes nothing
``POST /v1/unsubscribe/{token}``       the button, or RFC 8058 One-Click
                                       (``List-Unsubscribe=One-Click``): unsubscribes
``GET /openapi.json``                  the API described
=====================================  ==========================================================

A subscribe request is refused in this order, so a flood costs little and changes nothing: the
client (its IP address) over its rate → 429 with ``Retry-After``, before a byte is read; a
foreign ``Origin`` (neither this app nor the status page) → 403; a declared ``Content-Length``
over 16 KiB → 413 unread, a longer stream cut at the cap → 413; a bad address or an unknown
component → 400 naming the field; the mailbox (``+tag`` and case folded) over its rate → 429.
Then the request is queued (:mod:`crisiscomms.api.work_queue`) and answered 202 at once: the
database and the email provider are touched only by the queue's workers
(:mod:`crisiscomms.api.subscribe_mailer`), so the answer takes the same time whether the
address is new, pending or subscribed, and a slow provider holds no request. The queue full →
503 with ``Retry-After``. What a subscribe costs the event loop is kept small, because every
other request waits behind it under a crowd: no ``stat`` per request while the components
asked for are known, client keys parsed once, no per-item ``Future`` in the queue.

A confirm or unsubscribe POST acts only when it comes from our own page: an ``Origin`` that is
this app's, or, when the browser sends none, the page's form token (an HMAC of the link);
else 403 and nothing changes. RFC 8058's One-Click body unsubscribes without either (mail
providers post it from their servers). Every page carries the security headers of
:mod:`crisiscomms.api.headers`; links carry tokens, so no page is cached and no referrer sent.

A form gets a small page in the reader's language, a JSON client gets JSON
(``{"message", "field", "values"}``); never a stack trace.
"""

from __future__ import annotations

import email.errors
import email.parser
import email.policy
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from crisiscomms.api.body import BodyError, read_capped
from crisiscomms.api.headers import SecurityHeadersMiddleware, page_headers
from crisiscomms.api.subscribe_mailer import SubscribeJob, SubscribeMailer
from crisiscomms.api.throttle import KeyedLimiter, client_key, retry_after_header
from crisiscomms.api.work_queue import WorkQueue
from crisiscomms.audience import subscriptions as subs
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.core.settings import Settings
from crisiscomms.statuspage.catalog import Catalog
from crisiscomms.statuspage.model import is_locale
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.statuspage.views import environment

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BODY = 16_384
"""Largest subscribe body (a form with every component fits many times over)."""
MAX_LINK_BODY = 4_096
"""Largest confirm/unsubscribe POST body (a form token or the One-Click field)."""
BUSY_RETRY_S = 30
ONE_CLICK = ("List-Unsubscribe", "One-Click")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` as a browser's ``Origin`` names it (default port
    left out); "" when it has none."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme.lower()}://{host}{suffix}"


class _KnownComponents:
    """The status page's components, re-read only when ``state.json`` changes (it can be
    megabytes: never parsed per request), and looked at (one ``stat``) at most once per
    ``RECHECK_S`` while every component asked for is known: a ``stat`` costs the event loop
    as much as the rest of a subscribe request, and a component added to the page is seen at
    once anyway (an unknown name looks again)."""

    RECHECK_S = 1.0

    def __init__(self, settings: Settings) -> None:
        self.page = StatusPage(settings.resolved_status_page_dir, page_name="-",
                               page_url=settings.status_page_url)
        self._path = str(self.page.state_path)
        self._stamp: tuple[int, int] | None = None
        self._names: list[str] = []
        self._known: frozenset[str] = frozenset()
        self._looked_at = -math.inf
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def cached(self, wanted: Iterable[str] = ()) -> list[str] | None:
        """The names when the file has not changed since it was read (at most one ``stat``,
        no read: safe on the event loop); None when it must be read again (:meth:`names`)."""
        now = time.monotonic()
        if now - self._looked_at < self.RECHECK_S and all(
                name.strip() in self._known for name in wanted if name and name.strip()):
            return list(self._names)
        if self._stat() != self._stamp:
            return None
        self._looked_at = now
        return list(self._names)

    def names(self) -> list[str]:
        """Reads the file when it changed (call from a worker thread)."""
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                try:
                    self._names = list(self.page.load()["components"]) if stamp else []
                except (OSError, ValueError, KeyError, TypeError):
                    self._names = []
                self._known, self._stamp = frozenset(self._names), stamp
            self._looked_at = time.monotonic()
            return list(self._names)


def form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """The fields of an urlencoded or ``multipart/form-data`` body (RFC 8058 allows both);
    ValueError when unreadable."""
    if not content_type.lower().startswith("multipart/form-data"):
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
        if not message.is_multipart():
            raise ValueError("not a multipart body")
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                text = payload.decode("utf-8") if isinstance(payload, bytes) else ""
                fields.setdefault(name, []).append(text.strip())
        return fields
    except (email.errors.MessageError, LookupError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable multipart body: {type(exc).__name__}") from None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its database, email channel, limits and URLs come from ``settings``."""
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    base = (settings.subscriptions_url or "http://127.0.0.1:8040").rstrip("/")
    page_name = f"{settings.organization} Status"
    own_origin = origin_of(base)
    page_origin = origin_of(settings.status_page_url)
    secret = settings.subscriptions_form_secret
    form_key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    known = _KnownComponents(settings)
    by_client = KeyedLimiter(settings.subscribe_client_per_minute / 60.0,
                             settings.subscribe_client_burst)
    by_mailbox = KeyedLimiter(settings.subscribe_mailbox_per_hour / 3600.0,
                              settings.subscribe_mailbox_burst)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        queue.stop()  # the queued confirmations go out before the process ends
        if reader is not engine:
            reader.dispose()

    app = FastAPI(
        lifespan=lifespan, title="crisiscomms status page subscriptions", version="1",
        description="The status page's email subscriptions: double opt-in, per component, "
                    "RFC 8058 one-click unsubscribe (docs/status_page.md).",
        docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.add_middleware(SecurityHeadersMiddleware)

    # -- answers ----------------------------------------------------------------------------

    def render(template: str, locale: str, status: int, *,
               headers: Mapping[str, str] | None = None, **values: Any) -> HTMLResponse:
        html = environment().get_template(template).render(
            locale=locale, page_name=page_name, page_url=settings.status_page_url, **values)
        return HTMLResponse(html, status_code=status,
                            headers={**page_headers(html), **(headers or {})})

    @functools.lru_cache(maxsize=512)
    def fixed_page(message_key: str, locale: str) -> tuple[str, dict[str, str]]:
        """A page without values, rendered once (the same bytes for everyone)."""
        catalog = Catalog(locale if is_locale(locale) else "en")
        html = environment().get_template("intake.html.j2").render(
            locale=catalog.locale, page_name=page_name, page_url=settings.status_page_url,
            message=catalog(message_key), back=catalog("intake.back"))
        return html, page_headers(html)

    def page(message_key: str, locale: str, status: int, *,
             headers: Mapping[str, str] | None = None, **values: Any) -> HTMLResponse:
        if not values:
            html, own = fixed_page(message_key, locale if is_locale(locale) else "en")
            return HTMLResponse(html, status_code=status, headers={**own, **(headers or {})})
        catalog = Catalog(locale if is_locale(locale) else "en")
        return render("intake.html.j2", catalog.locale, status, headers=headers,
                      message=catalog(message_key, **values), back=catalog("intake.back"))

    def answer(is_form: bool, key: str, locale: str, status: int, *,
               error: CrisisCommsError | None = None,
               headers: Mapping[str, str] | None = None, **values: Any) -> Response:
        if is_form:
            return page(key, locale, status, headers=headers, **values)
        body = {"message": Catalog("en")(key, **values), **(error.fields() if error else {})}
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def link_page(action: str, token: str, locale: str) -> HTMLResponse:
        catalog = Catalog(locale if is_locale(locale) else "en")
        return render("link_action.html.j2", catalog.locale, 200,
                      prompt=catalog(f"intake.{action}_prompt"),
                      button=catalog(f"intake.{action}_button"),
                      form_token=form_token(action, token), back=catalog("intake.back"))

    def link_error(exc: subs.LinkError) -> HTMLResponse:
        if exc.reason == "expired":
            return page("intake.expired_link", "en", 410)
        return page("intake.unknown_link", "en", 404)

    # -- where a request comes from -----------------------------------------------------------

    def form_token(action: str, token: str) -> str:
        return hmac.new(form_key, f"{action}\0{token}".encode(), hashlib.sha256).hexdigest()

    def foreign(request: Request, *allowed: str) -> bool:
        """A browser says the request comes from another site."""
        origin = request.headers.get("origin")
        if origin is not None:
            host = request.headers.get("host", "")
            same = origin_of(f"{request.url.scheme}://{host}") if host else ""
            return origin.strip().lower() not in {o for o in (*allowed, same) if o}
        return request.headers.get("sec-fetch-site", "").lower() == "cross-site"

    def same_origin(request: Request) -> bool:
        return request.headers.get("origin") is not None and not foreign(request, own_origin)

    # -- subscribe ----------------------------------------------------------------------------

    mailer = SubscribeMailer(settings, engine, base_url=base, page_name=page_name)
    queue: WorkQueue[SubscribeJob] = WorkQueue(
        mailer, workers=settings.subscribe_senders,
        max_pending=settings.subscribe_queue_max, name="subscribe-mailer")
    app.state.subscribe_queue = queue

    @app.post("/v1/subscribe", status_code=202, tags=["subscriptions"],
              summary="Subscribe an address (double opt-in)",
              openapi_extra={"requestBody": SUBSCRIBE_BODY}, responses=SUBSCRIBE_RESPONSES)
    async def subscribe(request: Request) -> Response:
        """Queues the confirmation email and answers 202 at once, the same way whatever the
        address's state (never tells who is subscribed)."""
        is_json = request.headers.get("content-type", "").lower().startswith(
            "application/json")
        wait_s = by_client.retry_after(client_key(request.client.host if request.client
                                                  else None))
        if wait_s > 0:
            log.warning("subscribe: a client is over its rate")
            return answer(not is_json, "intake.too_many", "en", 429,
                          headers=retry_after_header(wait_s))
        if foreign(request, own_origin, page_origin):
            return answer(not is_json, "intake.foreign_form", "en", 403)
        try:
            raw = await read_capped(request, MAX_BODY)
        except BodyError as exc:
            key = "intake.too_large" if exc.status == 413 else "intake.invalid_email"
            return answer(not is_json, key, "en", exc.status, error=exc)
        locale = "en"
        try:
            if is_json:
                data = json.loads(raw or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                address = str(data.get("email") or "")
                comps = data.get("components") or []
                components = [str(c) for c in comps] if isinstance(comps, list) else \
                    str(comps).split(",")
                locale = str(data.get("locale") or "en")
            else:
                form = parse_qs(raw.decode("utf-8"), keep_blank_values=False)
                address = (form.get("email") or [""])[0]
                components = form.get("components", [])
                locale = (form.get("locale") or ["en"])[0]
        except (ValueError, UnicodeDecodeError, RecursionError):
            return answer(not is_json, "intake.invalid_email", "en", 400)
        locale = locale if is_locale(locale) else "en"
        names = known.cached(components)
        if names is None:
            names = await run_in_threadpool(known.names)
        try:
            address = subs.normalise_email(address)
            chosen = subs.normalise_components(components, names)
        except subs.SubscriptionError as exc:
            if exc.field == "components":
                return answer(not is_json, "intake.unknown_components", locale, 400, error=exc,
                              components=", ".join(exc.values))
            return answer(not is_json, "intake.invalid_email", locale, 400, error=exc)
        wait_s = by_mailbox.retry_after(subs.mailbox_key(address))
        if wait_s > 0:
            log.warning("subscribe: a mailbox is over its rate")
            return answer(not is_json, "intake.too_many", locale, 429,
                          headers=retry_after_header(wait_s))
        if not queue.submit(SubscribeJob(address, tuple(chosen), locale)):
            log.error("subscribe: the queue is full (%d waiting)", queue.max_pending)
            return answer(not is_json, "intake.busy", locale, 503,
                          headers=retry_after_header(BUSY_RETRY_S))
        return answer(not is_json, "intake.check_inbox", locale, 202)

    # -- the pages' reads ----------------------------------------------------------------------

    read_in_loop = engine.dialect.name == "sqlite"
    # the loop's own engine: its one connection is never waited for (the threads' pool can
    # be all taken by writes waiting for SQLite's lock, and the loop would stop with them)
    reader = make_engine(settings.resolved_database_url) if read_in_loop else engine

    async def look_up(read: Callable[[str], T], token: str) -> T:
        """A page's read-only lookup of one row by its indexed token. On SQLite (a local
        file; in WAL mode a reader does not wait for writers) it runs right here, on
        ``reader``: about 0.2 ms of the loop, less than a subscribe request costs it, where a
        trip to a worker thread and back costs the page three more turns of the loop, each
        as long as the crowd makes it (16 ms at 2,000 subscribes a second:
        ``bench/subscriptions.py``). A server database is across a network, which must not
        hold the loop: a thread."""
        if read_in_loop:
            return read(token)
        return await run_in_threadpool(read, token)

    # -- confirm ------------------------------------------------------------------------------

    def pending_locale(token: str) -> str:
        with session_scope(reader) as session:
            return subs.pending_for(session, token).locale

    def confirm_now(token: str) -> str:
        with session_scope(engine) as session:
            return subs.confirm(session, token).locale

    @app.get("/v1/confirm/{token}", response_class=HTMLResponse, tags=["subscriptions"],
             summary="The confirmation page (changes nothing)", responses=LINK_RESPONSES)
    async def confirm_page(token: str) -> Response:
        try:
            locale = await look_up(pending_locale, token)
        except subs.LinkError as exc:
            return link_error(exc)
        return link_page("confirm", token, locale)

    @app.post("/v1/confirm/{token}", response_class=HTMLResponse, tags=["subscriptions"],
              summary="Confirm a subscription (the page's button)",
              openapi_extra={"requestBody": LINK_BODY}, responses=LINK_POST_RESPONSES)
    async def confirm(token: str, request: Request) -> Response:
        fields = await link_form(request)
        if isinstance(fields, Response):
            return fields
        if foreign(request, own_origin) or not (
                same_origin(request) or valid_form_token(fields, "confirm", token)):
            log.warning("confirm: refused a post from outside our page")
            return page("intake.cross_site", "en", 403)
        try:
            locale = await run_in_threadpool(confirm_now, token)
        except subs.LinkError as exc:
            return link_error(exc)
        return page("intake.confirmed", locale, 200)

    # -- unsubscribe --------------------------------------------------------------------------

    def subscriber_locale(token: str) -> str | None:
        with session_scope(reader) as session:
            row = subs.subscriber_for(session, token)
            return row.locale if row else None

    def unsubscribe_now(token: str) -> str | None:
        with session_scope(engine) as session:
            row = subs.unsubscribe(session, token)
            return row.locale if row else None

    @app.get("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["subscriptions"],
             summary="The unsubscribe page (changes nothing)", responses=LINK_RESPONSES)
    async def unsubscribe_page(token: str) -> Response:
        locale = await look_up(subscriber_locale, token)
        if locale is None:
            return page("intake.unknown_link", "en", 404)
        return link_page("unsubscribe", token, locale)

    @app.post("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["subscriptions"],
              summary="Unsubscribe (the page's button, or RFC 8058 One-Click)",
              openapi_extra={"requestBody": LINK_BODY}, responses=LINK_POST_RESPONSES)
    async def unsubscribe(token: str, request: Request) -> Response:
        fields = await link_form(request)
        if isinstance(fields, Response):
            return fields
        one_click = fields.get(ONE_CLICK[0]) == [ONE_CLICK[1]]
        if not one_click and (foreign(request, own_origin) or not (
                same_origin(request) or valid_form_token(fields, "unsubscribe", token))):
            log.warning("unsubscribe: refused a post from outside our page")
            return page("intake.cross_site", "en", 403)
        locale = await run_in_threadpool(unsubscribe_now, token)
        if locale is None:
            return page("intake.unknown_link", "en", 404)
        return page("intake.unsubscribed", locale, 200)

    async def link_form(request: Request) -> dict[str, list[str]] | Response:
        """The POST's form fields (bounded read); a refusal page when it is too big or not a
        form."""
        try:
            body = await read_capped(request, MAX_LINK_BODY)
            return form_fields(request.headers.get("content-type", ""), body)
        except BodyError as exc:
            key = "intake.too_large" if exc.status == 413 else "intake.cross_site"
            return page(key, "en", exc.status)
        except (ValueError, UnicodeDecodeError, LookupError):
            return page("intake.cross_site", "en", 400)

    def valid_form_token(fields: dict[str, list[str]], action: str, token: str) -> bool:
        given = (fields.get("form_token") or [""])[0]
        return bool(given) and hmac.compare_digest(  # bytes: any text compares, no TypeError
            given.encode("utf-8", "surrogatepass"), form_token(action, token).encode())

    return app


# -- the OpenAPI of what the routes read raw -----------------------------------------------------

_MESSAGE = {"type": "object", "required": ["message"],
            "properties": {"message": {"type": "string"},
                           "field": {"type": ["string", "null"]},
                           "values": {"type": "array", "items": {"type": "string"}}}}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_PROBLEM = {"application/json": {"schema": _MESSAGE}, **_HTML}
_RETRY = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
_SUBSCRIBE_FIELDS = {
    "type": "object", "required": ["email"],
    "properties": {
        "email": {"type": "string", "maxLength": 254, "example": "reader@example.org"},
        "components": {"type": "array", "items": {"type": "string"},
                       "description": "Status page components to follow; none: all."},
        "locale": {"type": "string", "example": "en"}}}
SUBSCRIBE_BODY: dict[str, Any] = {"required": True, "content": {
    "application/json": {"schema": _SUBSCRIBE_FIELDS},
    "application/x-www-form-urlencoded": {"schema": _SUBSCRIBE_FIELDS}}}
SUBSCRIBE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted; a confirmation email is on its way if one is due (the "
          "same answer whatever the address's state).", "content": _PROBLEM},
    400: {"description": "A bad address or an unknown component; `field` names it.",
          "content": _PROBLEM},
    403: {"description": "Posted from another site's page.", "content": _PROBLEM},
    413: {"description": "The body is over 16 KiB.", "content": _PROBLEM},
    429: {"description": "The client or the mailbox is over its rate.", "content": _PROBLEM,
          "headers": _RETRY},
    503: {"description": "Too many requests waiting; retry.", "content": _PROBLEM,
          "headers": _RETRY},
}
LINK_BODY: dict[str, Any] = {"required": False, "content": {
    "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
        "form_token": {"type": "string", "description": "From the page's form."},
        "List-Unsubscribe": {"type": "string", "enum": ["One-Click"],
                             "description": "RFC 8058 one-click (unsubscribe only)."}}}}}}
LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A page with the button.", "content": _HTML},
    404: {"description": "Unknown, used or replaced link.", "content": _HTML},
    410: {"description": "The confirmation link expired.", "content": _HTML},
    422: {"description": "A malformed path.", "content": {"application/json": {}}},
}
LINK_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done.", "content": _HTML},
    400: {"description": "The body is not a form.", "content": _HTML},
    403: {"description": "Not posted from our page (foreign Origin, no form token) and not "
          "RFC 8058 One-Click; nothing changed.", "content": _HTML},
    404: {"description": "Unknown, used or replaced link.", "content": _HTML},
    410: {"description": "The confirmation link expired.", "content": _HTML},
    413: {"description": "The body is over 4 KiB.", "content": _HTML},
    422: {"description": "A malformed path.", "content": {"application/json": {}}},
}
