"""The intake API (``crisiscomms api``): monitoring, incident and recall systems post events.

=============================================  ============================================
``POST /v1/events``                            our own event shape, Standard Webhooks signed
                                               (the key that verifies names the source)
``POST /v1/events/alertmanager/{source}``      Prometheus Alertmanager webhook (v4), bearer
``POST /v1/events/pagerduty/{source}``         PagerDuty v3 webhook, ``X-PagerDuty-Signature``
``POST /v1/events/grafana/{source}``           Grafana alerting webhook, bearer (and HMAC)
``POST /v1/events/recall/{source}``            a recall feed in JSON, Standard Webhooks signed
``GET /healthz``                               liveness
``GET /openapi.json``, ``GET /docs``           the API described, with an example per source
=============================================  ============================================

The routes come from the adapter registry (``intake/adapters/registry.py``): nothing here
lists kinds. Every POST is refused in this order, so a bad request costs little and changes
nothing: a declared ``Content-Length`` over ``intake_max_body_bytes`` → 413 before a byte is
read; an unknown source → 401; the source over its rate → 429 with ``Retry-After``; the body
longer than the limit while it streams → 413, cut at the cap; credentials or signature wrong,
expired or missing → 401 (checked over the raw bytes, before they are parsed); not JSON → 400;
a field wrong → 422 naming it (``{"message", "field"}``). Then the signals are routed by the
playbooks' ``intake:`` rules and stored (``intake/service.py``) by one writer thread that
commits what concurrent requests bring in one transaction; a replayed delivery id → 401 and
nothing stored. Only then the answer: 202 with what each signal did (started an incident,
grouped into one, a duplicate, a proposal, ignored). The dispatcher (``flows/dispatch.py``) is
woken right after and starts the flow runs; the API never waits for Prefect.

Refusals are logged with their reason and the source's name, never a key, a signature, a
token or a body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from crisiscomms.api.body import BodyError, check_declared_length, read_capped
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.core.errors import IntakeError
from crisiscomms.core.group_commit import GroupCommit
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.rate_limits import TokenBucket
from crisiscomms.intake.adapters.registry import ADAPTERS, authenticate
from crisiscomms.intake.contract import (
    AcceptResult,
    Adapter,
    IntakeRequest,
    Outcome,
    Routed,
    Source,
)
from crisiscomms.intake.rules import WorkspaceRules, route
from crisiscomms.intake.service import accept
from crisiscomms.intake.sources import SourceStore

log = logging.getLogger(__name__)

INLINE_BYTES = 65_536
"""Bodies up to this size are verified and parsed on the event loop (microseconds); larger
ones in the thread pool, so one big request never stalls the others."""

DISPATCHING = frozenset({Outcome.start, Outcome.propose})


class EventOutcome(BaseModel):
    """What one signal of the request did."""

    event_id: int = Field(description="The stored event (`intakeevent.id`).")
    outcome: Outcome = Field(description="start: a new incident's flow is started; propose: "
                             "the resolution is proposed for approval; grouped: joined an open "
                             "incident; duplicate: seen before; ignored: no playbook rule "
                             "matches.")
    incident_ref: str | None = None
    stage: str | None = None


class IntakeAnswer(BaseModel):
    """202: the request was verified and its signals stored; flows start right after."""

    source: str
    accepted: int = Field(description="Signals stored from this request.")
    events: list[EventOutcome]


class Problem(BaseModel):
    """A refusal: what is wrong, and the request field at fault when there is one."""

    message: str
    field: str | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON."},
    401: {"model": Problem, "description": "Unknown source; credentials or signature "
          "missing, wrong or expired; or a replayed delivery id. Nothing was stored."},
    413: {"model": Problem, "description": "The body is over the limit (refused from "
          "Content-Length before it is read, or cut at the cap)."},
    422: {"model": Problem, "description": "A field is missing or wrong; `field` names it."},
    429: {"model": Problem, "description": "The source is over its rate; retry after "
          "`Retry-After` seconds.", "headers": {"Retry-After": {
              "description": "Seconds to wait", "schema": {"type": "integer"}}}},
    503: {"model": Problem, "description": "The event could not be stored now; retry."},
}


def problem(status: int, message: str, field: str | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "field": field}, status, headers=dict(headers or {}))


class _Limits:
    """A token bucket per source, at the source's own rate (1 s of burst)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, float], TokenBucket] = {}

    def retry_after(self, source: Source) -> float:
        key = (source.name, source.rate_per_s)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(source.rate_per_s)
        return bucket.try_acquire()


class IntakeApp:
    """The request path of one kind of sender: find the source, limit, verify, parse, route,
    store. Built once per app; every method is safe from the event loop and threads."""

    def __init__(self, settings: Settings, engine: Engine,
                 on_stored: Callable[[], None]) -> None:
        self.settings, self.engine, self.on_stored = settings, engine, on_stored
        self.sources = SourceStore.from_settings(settings)
        self.sources.check()  # a drill key in production, a bad file: refuse to start
        self.limits = _Limits()
        self.rules = WorkspaceRules(settings.playbooks_dir)
        self.writer: GroupCommit[IntakeRequest, AcceptResult] = GroupCommit(
            self._store, name="intake-writer", max_batch=2000,
            weight=lambda request: max(1, len(request.routed)))

    def _store(self, batch: list[IntakeRequest]) -> list[AcceptResult]:
        return accept(self.engine, batch, now=datetime.now(UTC),
                      window_s=self.settings.intake_replay_window_s)

    def throttle(self, source: Source) -> None:
        wait_s = self.limits.retry_after(source)
        if wait_s > 0:
            raise IntakeError(f"source {source.name!r} is over its rate of "
                              f"{source.rate_per_s:g} requests/s", status=429,
                              retry_after_s=wait_s, field="source")

    def verify(self, adapter: Adapter, name: str | None, headers: Mapping[str, str],
               body: bytes) -> tuple[Source, str | None]:
        """The source and the request's delivery id (``adapters.registry.authenticate``: the
        URL's source, or for ``/v1/events`` the events source whose key verifies)."""
        return authenticate(self.sources, adapter.kind, name, headers, body, now=time.time(),
                            window_s=self.settings.intake_replay_window_s)

    def route(self, adapter: Adapter, source: Source, delivery_id: str | None,
              body: bytes) -> IntakeRequest:
        received = datetime.now(UTC)
        signals = adapter.parse(source, body, received_at=received)
        playbooks = self.rules.current()
        return IntakeRequest(source.name, delivery_id,
                             [Routed(s, route(s, playbooks, now=received)) for s in signals])

    async def receive(self, adapter: Adapter, request: Request,
                      source_name: str | None) -> Response:
        limit = self.settings.intake_max_body_bytes
        where = f"{adapter.kind.value}/{source_name or '?'}"
        try:
            try:
                check_declared_length(request, limit)
            except BodyError as exc:
                raise IntakeError(str(exc), status=exc.status, field=exc.field) from None
            if source_name is not None:  # before a byte is read: a flood costs nothing
                self.throttle(self.sources.find(source_name, adapter.kind))
            try:
                body = await read_capped(request, limit)
            except BodyError as exc:
                raise IntakeError(str(exc), status=exc.status, field=exc.field) from None
            headers = request.headers
            if len(body) <= INLINE_BYTES:
                source, delivery_id = self.verify(adapter, source_name, headers, body)
                if source_name is None:
                    self.throttle(source)
                intake = self.route(adapter, source, delivery_id, body)
            else:
                source, delivery_id = await run_in_threadpool(
                    self.verify, adapter, source_name, headers, body)
                if source_name is None:
                    self.throttle(source)
                intake = await run_in_threadpool(self.route, adapter, source, delivery_id,
                                                 body)
            where = f"{adapter.kind.value}/{source.name}"
            try:
                result = await self.writer.store(intake)
            except Exception as exc:  # the database: the sender retries
                log.error("intake %s: not stored: %s", where, type(exc).__name__)
                return problem(503, "the event could not be stored now; retry")
            if result.replayed:
                raise IntakeError("this delivery id was already accepted (a replay)",
                                  status=401, field="webhook-id")
        except IntakeError as exc:
            log.warning("intake %s: refused %d (%s): %s", where, exc.status,
                        exc.field or "-", exc.reason)
            headers_out = ({"Retry-After": str(max(1, round(exc.retry_after_s + 0.499)))}
                           if exc.retry_after_s is not None else None)
            return problem(exc.status, exc.reason, exc.field, headers_out)
        if any(e.outcome in DISPATCHING for e in result.events):
            self.on_stored()
        log.info("intake %s: %s", where, ", ".join(
            f"{e.outcome.value} {e.incident_ref or '-'}" for e in result.events) or "no signals")
        # the IntakeAnswer shape (the OpenAPI's), built as plain data: a model per request
        # and its dump cost more than the rest of the answer
        return Response(orjson.dumps({
            "source": source.name, "accepted": len(result.events),
            "events": [{"event_id": e.event_id, "outcome": e.outcome.value,
                        "incident_ref": e.incident_ref, "stage": e.stage}
                       for e in result.events]}), 202, media_type="application/json")


def _openapi_extra(adapter: Adapter) -> dict[str, Any]:
    """The body the route reads raw (to verify its signature first), described with the
    adapter's payload model and its examples; the credential headers it needs."""
    schema = adapter.payload_model.model_json_schema(ref_template="#/components/schemas/{model}")
    examples = schema.get("examples") or []
    content: dict[str, Any] = {"schema": {k: v for k, v in schema.items() if k != "$defs"}}
    if examples:
        content["example"] = examples[0]
    return {
        "requestBody": {"required": True, "content": {"application/json": content}},
        "parameters": [{"name": name, "in": "header", "required": True,
                        "schema": {"type": "string"}, "description": about}
                       for name, about in adapter.auth_headers],
        "x-defs": schema.get("$defs", {}),
    }


def _add_route(app: FastAPI, intake: IntakeApp, adapter: Adapter) -> None:
    extra = _openapi_extra(adapter)
    app.state.payload_defs.update(extra.pop("x-defs"))
    doc = (adapter.__doc__ or "").strip().splitlines()
    options: dict[str, Any] = {
        "status_code": 202, "response_model": IntakeAnswer, "responses": PROBLEMS,
        "openapi_extra": extra, "summary": doc[0] if doc else adapter.kind.value,
        "description": "\n".join(doc[1:]).strip() or None, "tags": ["events"],
        "operation_id": f"post_{adapter.kind.value}_event"}
    if "{source}" in adapter.path:
        async def named(request: Request, source: str) -> Response:
            return await intake.receive(adapter, request, source)
        app.post(adapter.path, **options)(named)
    else:
        async def unnamed(request: Request) -> Response:
            return await intake.receive(adapter, request, None)
        app.post(adapter.path, **options)(unnamed)

    async def serve(request: Request) -> Response:
        return await intake.receive(adapter, request, request.path_params.get("source"))

    # The APIRoute above describes the route in the OpenAPI; a plain Starlette route matched
    # first serves it. The endpoint reads the raw request and answers a Response itself, so
    # FastAPI's per-request dependency solving would buy nothing (it was a quarter of the
    # request's CPU under load).
    app.router.routes.insert(0, Route(adapter.path, serve, methods=["POST"]))


def create_app(settings: Settings | None = None, *,
               on_stored: Callable[[], None] | None = None,
               engine: Engine | None = None) -> FastAPI:
    """The app. ``on_stored`` is called after a request stored something to start (the
    dispatcher's ``wake``; ``crisiscomms api`` wires it)."""
    settings = settings or Settings()
    engine = engine or make_engine(settings.resolved_database_url)
    init_db(engine)
    intake = IntakeApp(settings, engine, on_stored or (lambda: None))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        intake.writer.stop()

    app = FastAPI(
        title="crisiscomms intake API", version="1",
        description="Monitoring, incident and recall systems post events here; each accepted "
                    "event runs its playbook (docs/intake.md). Every route is signed per "
                    "source; unsigned, badly signed, expired or replayed requests get 401 and "
                    "start nothing.",
        lifespan=lifespan, docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.intake = intake
    app.state.payload_defs = {}

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    for adapter in ADAPTERS.values():
        _add_route(app, intake, adapter)
    _publish_payload_defs(app)
    return app


def _publish_payload_defs(app: FastAPI) -> None:
    """Put the payload models' nested schemas among the OpenAPI components (the routes' bodies
    refer to them)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                app.state.payload_defs)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

