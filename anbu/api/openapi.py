"""The OpenAPI document, made to tell the truth about errors.

FastAPI documents a 422 in its own list form (``HTTPValidationError``) and nothing else; anbu
answers every error with :class:`anbu.api.schemas.Problem` (``{error, detail, fields}``) and
may answer 401, 403, 404, 409 too. The rules below say which operation may answer which, from
what the operation is (authenticated, names a record, carries a body, writes), because that is
what decides it in code: ``get_principal`` (401, 403 for a missing scope), the district
scoping (404 for another district's record), ``ConflictError`` (409), the validation handler
(422). ``tests/test_openapi_contract.py`` runs schemathesis to keep this honest.

Another module adding a status to every operation (a body limit's 413, a rate limit's 429)
adds it to :data:`EXTRA_RESPONSES`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from anbu.api.schemas import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WRITE_METHODS = {"post", "put", "patch", "delete"}

_WHY = {
    "400": "the request could not be read",
    "401": "no X-API-Key, or a key that is unknown, revoked or expired",
    "403": "the key lacks the scope this needs (read, write, admin)",
    "404": "no such record, or one in a district this key may not see",
    "409": "the request conflicts with what is stored (a duplicate, a concurrent change)",
    "422": "the request is invalid: `fields` names each field and why",
}

# status -> description, added to every operation (see the module docstring).
EXTRA_RESPONSES: dict[str, str] = {
    # anbu.api.gate: the body is refused while it streams in.
    "413": "the request body is larger than the configured limit (ANBU_LIMITS__MAX_BODY_BYTES)",
    # anbu.api.limits: per key, and per client address on unauthenticated routes.
    "429": "too many requests: wait for `Retry-After` seconds",
    # anbu.api.app.DatabaseOutageMiddleware and anbu.api.limits.InflightLimit: nothing was
    # stored; retry.
    "503": "the database is unreachable (`database_unavailable`) or this API process is busy"
    " (`busy`): nothing was stored; retry after `Retry-After` seconds",
}


def _problem(why: str) -> dict[str, Any]:
    return {"description": why, "content": {"application/json": {"schema": PROBLEM_REF}}}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    authenticated = bool(operation.get("security"))
    has_path_params = "{" in path
    has_body = "requestBody" in operation
    codes = ["422"]
    if authenticated:
        codes += ["401", "403"]
        if has_path_params or has_body:
            codes.append("404")
        if method in WRITE_METHODS:
            codes.append("409")
    elif has_path_params:
        codes.append("404")
    return codes


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``schema`` in place: every operation lists the errors it may answer, each as a
    Problem; FastAPI's list-form validation schemas are dropped."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            responses = operation.setdefault("responses", {})
            for code in _statuses(path, method, operation):
                responses[code] = _problem(_WHY[code])
            for code, why in EXTRA_RESPONSES.items():
                responses[code] = _problem(why)
            for callback in operation.get("callbacks", {}).values():
                for cb_item in callback.values():
                    for cb_operation in cb_item.values():
                        cb_operation.get("responses", {}).pop("422", None)
    return schema


def install(app: FastAPI) -> None:
    """Serve the corrected document at ``/openapi.json`` (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
