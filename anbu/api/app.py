"""The FastAPI application: routers, error translation, lifespan."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anbu import __version__
from anbu.api import audit, feedback, keys, openapi, routes, signals, voice, webhooks
from anbu.api.deps import UnauthenticatedError
from anbu.api.gate import InputGate
from anbu.api.headers import SecurityHeaders
from anbu.api.limits import BUSY_RETRY_S, InflightLimit, RateLimits
from anbu.container import Container
from anbu.db.outage import (
    RETRY_AFTER_S,
    DatabaseMonitor,
    is_pool_exhausted,
    is_unavailable,
    monitor_of,
    ping,
)
from anbu.errors import (
    AnbuError,
    ConflictError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    ValidationError,
)

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], Any]


def _problem(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail, **extra})


def unavailable_response() -> JSONResponse:
    resp = _problem(
        503, "database_unavailable", "the database is unreachable; retry in a few seconds"
    )
    resp.headers["Retry-After"] = str(RETRY_AFTER_S)
    return resp


def pool_busy_response() -> JSONResponse:
    # The database is up: this process had more requests than pooled connections for the
    # pool's whole timeout. The in-flight bound's answer (busy), not an outage.
    resp = _problem(503, "busy", "no database connection was free in time; retry shortly")
    resp.headers["Retry-After"] = str(BUSY_RETRY_S)
    return resp


class DatabaseOutageMiddleware:
    """Turns "the database is unreachable" from any route or dependency into a 503 with
    ``Retry-After`` and a JSON reason, counted by the engine's monitor (one log line per
    outage), instead of a 500 with a traceback per request; a pool with no connection free
    into a 503 ``busy``, which is not an outage. Anything else passes through."""

    def __init__(self, app: ASGIApp, monitor: DatabaseMonitor) -> None:
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if started:
                raise
            if is_pool_exhausted(error):
                await pool_busy_response()(scope, receive, send)
                return
            if not is_unavailable(error):
                raise
            self.monitor.failed(error, f"{scope['method']} {scope['path']}")
            await unavailable_response()(scope, receive, send)


def _allowed(request: Request) -> list[str]:
    # Starlette names the methods of the first route on the path only; the document knows
    # them all (the routers are nested, so their routes are not walked here).
    methods: set[str] = set()
    for template, item in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), request.url.path):
            methods |= {m.upper() for m in item if m in _HTTP_METHODS}
    return sorted(methods)


_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def create_app(
    container: Container,
    *,
    routers: Sequence[APIRouter] = (),
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The core's app around an already-wired container; processes get theirs, with every
    router, from :func:`anbu.app.parts.build_api`."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown()

    docs = container.settings.docs_enabled
    app = FastAPI(
        title="anbu",
        version=__version__,
        summary="Welfare check-in calls (안부전화) through Asterisk, with SMS escalation",
        lifespan=lifespan,
        # The access log (PIPA), written for every route in one place: anbu.api.audit.
        dependencies=[audit.AUDIT_TRAIL],
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.container = container
    # Outermost last: headers on every answer, the in-flight bound (refusing costs least),
    # rate limits, then the input gate (body size, NUL, surrogates), then the database-outage
    # translation closest to the routes.
    app.add_middleware(DatabaseOutageMiddleware, monitor=monitor_of(container.engine))
    app.add_middleware(InputGate, max_body_bytes=container.settings.limits.max_body_bytes)
    app.add_middleware(RateLimits, settings=container.settings.limits)
    app.add_middleware(InflightLimit, limit=container.settings.limits.max_inflight)
    app.add_middleware(SecurityHeaders)
    app.include_router(routes.router)
    app.include_router(signals.router)
    app.include_router(keys.router)
    app.include_router(audit.router)
    app.include_router(webhooks.router)
    app.include_router(feedback.router)
    app.include_router(voice.router)
    for router in routers:  # the outer packages' routers, mounted by anbu.app
        app.include_router(router)

    async def readiness() -> tuple[bool, dict[str, bool]]:
        checks = {"database": await ping(container.engine)}
        for name, probe in container.readiness.items():
            checks[name] = probe()
        return all(checks.values()), checks

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process answers (restart it when this fails); touches nothing else."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    @app.get("/health", tags=["health"], include_in_schema=False)
    async def ready() -> JSONResponse:
        """503 while the database (or, in a dialing process, Asterisk) is not ready, so a load
        balancer sends the traffic elsewhere. ``/health`` is the same check."""
        ok, checks = await readiness()
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        if ok:
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
        return _problem(422, "invalid_request", detail, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own errors (an unknown route, a method not allowed, a body that is not
        # JSON) in the same Problem form as ours; an unreadable body is a 422 like any other
        # invalid request.
        if exc.status_code == 400:
            return _problem(422, "invalid_request", f"body: {exc.detail}")
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        resp = _problem(exc.status_code, error, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            resp.headers[name] = value
        if exc.status_code == 405:
            resp.headers["Allow"] = ", ".join(_allowed(request))
        return resp

    @app.exception_handler(UnauthenticatedError)
    async def _unauth(_r: Request, exc: UnauthenticatedError) -> JSONResponse:
        resp = _problem(401, "unauthenticated", str(exc))
        resp.headers["WWW-Authenticate"] = "APIKey"
        return resp

    @app.exception_handler(IntegrityError)
    async def _integrity(_r: Request, exc: IntegrityError) -> JSONResponse:
        # A route that did not foresee a conflict still answers 409 with the constraint.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        if "unique" in reason.lower() or "duplicate" in reason.lower():
            return _problem(409, "conflict", f"already exists: {reason}")
        return _problem(422, "invalid_request", f"refused by the database: {reason}")

    @app.exception_handler(AnbuError)
    async def _anbu_error(_r: Request, exc: AnbuError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return _problem(404, "not_found", str(exc))
        if isinstance(exc, ForbiddenError):
            return _problem(403, "forbidden", str(exc))
        if isinstance(exc, ConflictError):
            return _problem(409, "conflict", str(exc))
        if isinstance(exc, GoneError):
            return _problem(410, "gone", str(exc))
        if isinstance(exc, ValidationError):
            return _problem(422, "invalid_request", str(exc))
        if is_unavailable(exc):
            monitor_of(container.engine).failed(exc, "request")
            return unavailable_response()
        log.exception("unhandled anbu error", exc_info=exc)
        return _problem(503, "unavailable", str(exc))

    openapi.install(app)
    return app
