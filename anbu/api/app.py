"""The FastAPI application: routers, error translation, lifespan."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from anbu import __version__
from anbu.api import audit, keys, openapi, routes, scheduling, signals, webhooks
from anbu.api.deps import ContainerDep, UnauthenticatedError
from anbu.container import Container
from anbu.errors import AnbuError, ConflictError, ForbiddenError, NotFoundError, ValidationError
from escalation import api as escalation_api

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], Any]


def _problem(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail, **extra})


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
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the app around an already-wired container (see :mod:`anbu.container`)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(
        title="anbu",
        version=__version__,
        summary="Welfare check-in calls (안부전화) through Asterisk, with SMS escalation",
        lifespan=lifespan,
        # The access log (PIPA), written for every route in one place: anbu.api.audit.
        dependencies=[audit.AUDIT_TRAIL],
    )
    app.state.container = container
    app.include_router(routes.router)
    app.include_router(signals.router)
    app.include_router(scheduling.router)
    app.include_router(escalation_api.router)
    app.include_router(keys.router)
    app.include_router(audit.router)
    app.include_router(webhooks.router)

    @app.get("/health", tags=["health"])
    async def health(c: ContainerDep) -> dict[str, Any]:
        db_ok = True
        try:
            async with c.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            log.exception("health: database check failed")
            db_ok = False
        checks: dict[str, Any] = {"database": db_ok}
        for name, probe in c.extras.get("health", {}).items():
            checks[name] = probe()
        ok = all(v is True for v in checks.values())
        return {"status": "ok" if ok else "degraded", "checks": checks}

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

    @app.exception_handler(AnbuError)
    async def _anbu_error(_r: Request, exc: AnbuError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return _problem(404, "not_found", str(exc))
        if isinstance(exc, ForbiddenError):
            return _problem(403, "forbidden", str(exc))
        if isinstance(exc, ConflictError):
            return _problem(409, "conflict", str(exc))
        if isinstance(exc, ValidationError):
            return _problem(422, "invalid_request", str(exc))
        log.exception("unhandled anbu error", exc_info=exc)
        return _problem(503, "unavailable", str(exc))

    openapi.install(app)
    return app
