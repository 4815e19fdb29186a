"""The document's promises, checked one by one (schemathesis covers them broadly in
tests/test_openapi_contract.py): errors are Problems with their status listed, request fields
take their own type only, a new resident has a monitoring state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_support import Api, h, new_resident


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


async def test_the_document_lists_problem_bodies_for_every_error(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"error", "detail"}
    for path, method, op in _operations(schema):
        codes = set(op["responses"])
        assert "422" in codes, (method, path)
        for code, response in op["responses"].items():
            if code >= "400":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Problem", (method, path, code)
        if op.get("security"):
            assert {"401", "403"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)


async def test_given_an_invalid_body_then_the_422_is_the_problem_the_document_says(
    api: Api,
) -> None:
    r = await api.client.post(
        "/v1/residents", headers=h(api.keys["gwanak"]), json={"name": 5, "phone": []}
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_request"
    assert {f["field"] for f in body["fields"]} >= {"name", "phone", "district_code"}
    r = await api.client.post(
        "/v1/residents",
        headers={**h(api.keys["gwanak"]), "content-type": "application/json"},
        content=b"\xff{",
    )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"
    r = await api.client.delete("/v1/residents", headers=h(api.keys["gwanak"]))
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"
    assert "GET" in r.headers["allow"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/programs", {"name": "p", "calling_hours": {"call_on_holidays": 0}}),
        ("/v1/programs", {"name": "p", "is_default": "false"}),
        ("/v1/programs", {"name": "p", "retry": {"max_attempts": True}}),
        ("/v1/programs", {"name": "p", "retry": {"max_attempts": "3"}}),
        ("/v1/programs", {"name": "p", "calling_hours": {"weekdays": [True]}}),
        ("/v1/checkins", {"resident_id": "x", "reason": "r", "priority": False}),
        ("/v1/api-keys", {"name": "k", "scopes": ["read"], "expires_at": 1893456000}),
    ],
)
async def test_given_a_value_of_another_type_then_it_is_refused_not_coerced(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    r = await api.client.post(path, headers=h(api.keys["admin"]), json=body)
    assert r.status_code == 422, r.text


async def test_given_a_numeric_time_in_a_query_then_422(api: Api) -> None:
    r = await api.client.get("/v1/audit", headers=h(api.keys["admin"]), params={"until": "0.5"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"].endswith("until")


async def test_given_a_new_resident_then_monitoring_and_risk_answer_not_monitored(
    api: Api,
) -> None:
    rid = await new_resident(api)
    r = await api.client.get(f"/v1/residents/{rid}/monitoring", headers=h(api.keys["gwanak"]))
    assert r.status_code == 200
    body = r.json()
    assert body["configured"] is False
    assert body["enabled"] is False
    assert body["tier"] is None
    assert body["level"] == "none"
    r = await api.client.get(f"/v1/residents/{rid}/risk", headers=h(api.keys["gwanak"]))
    assert r.status_code == 200
    assert r.json()["level"] == "none"
    assert r.json()["history"] == []
    r = await api.client.put(
        f"/v1/residents/{rid}/monitoring",
        headers=h(api.keys["gwanak"]),
        json={"tier": "calls", "risk_category": "high", "consent_call_records": True},
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/v1/residents/{rid}/monitoring", headers=h(api.keys["gwanak"]))
    assert r.json()["configured"] is True
    assert r.json()["tier"] == "calls"
