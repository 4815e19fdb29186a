"""One input gate: NUL characters and lone surrogates are a 422 wherever they come in (body,
query, path, the ack link, Kannel's callback), phone numbers follow the Korean numbering plan
in ASCII digits, officials need a mobile number, and every unique conflict is a 409.

Issue 12 found 18 NUL 500s on PostgreSQL (including the unauthenticated ``/ack/%00`` and the
SMS callback), ``010-1234-567８`` stored as is, and a duplicate ``external_ref`` as a 500."""

from __future__ import annotations

import httpx
import pytest

from anbu.domain.phone import normalize_mobile, normalize_phone
from anbu.errors import InvalidPhoneNumberError
from tests.api_support import ADMIN
from tests.test_api import api  # noqa: F401

API = tuple[httpx.AsyncClient, dict[str, str]]
H = {"X-API-Key": ADMIN}
JSON = {"Content-Type": "application/json", **H}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
RESIDENT = '{"district_code":"11620","name":"%s","phone":"01012345678","dong":"신림동"}'


@pytest.mark.parametrize(
    ("method", "url", "body", "headers"),
    [
        ("POST", "/v1/residents", RESIDENT % "김\\u0000안부", JSON),
        ("POST", "/v1/residents", RESIDENT % "김\\ud800", JSON),
        ("POST", "/v1/residents", RESIDENT % "김\\udc00안부", JSON),
        ("POST", "/v1/residents", (RESIDENT % "김").replace('"dong"', '"do\\u0000ng"'), JSON),
        ("GET", "/v1/residents?dong=%00", None, H),
        ("GET", "/v1/residents?dong=%ED%A0%80", None, H),
        ("GET", "/v1/incidents?district_code=11620%00", None, H),
        ("GET", "/v1/residents/%00", None, H),
        ("GET", "/v1/residents/a%ED%B0%80", None, H),
        ("GET", "/v1/do-not-call/010%00", None, H),
        ("GET", "/ack/%00", None, {}),
        ("POST", "/ack/%00", "finding=safe", FORM),
        ("POST", "/ack/sometoken", "finding=safe&note=%00", FORM),
        ("GET", "/v1/sms/kannel/inbound?from=01055550001&text=1%002&coding=0&id=n1", None, {}),
        ("GET", "/v1/sms/kannel/dlr?ref=a%00&status=1", None, {}),
    ],
)
async def test_given_nul_or_lone_surrogate_anywhere_when_requested_then_422(
    api: API,  # noqa: F811
    method: str,
    url: str,
    body: str | None,
    headers: dict[str, str],
) -> None:
    client, _ = api
    r = await client.request(method, url, content=body, headers=headers)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["error"] == "invalid_request"
    assert "NUL" in problem["detail"] or "surrogate" in problem["detail"]


async def test_given_ucs2_reply_when_bytes_contain_zero_then_still_accepted(
    api: API,  # noqa: F811
) -> None:
    """UCS-2 text has 0x00 bytes in every ASCII character: only decoded NULs are refused."""
    client, _ = api
    text = "".join(f"%{b:02X}" for b in "123456 확인".encode("utf-16-be"))
    r = await client.get(
        f"/v1/sms/kannel/inbound?from=01055550001&text={text}&coding=2&charset=UTF-16BE&id=u1"
    )
    assert r.status_code == 200
    assert r.headers["X-Anbu-Reply"] == "no_match"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("010-1234-567８", "ASCII digits"),
        ("０１０１２３４５６７８", "ASCII digits"),
        ("010-0000-0000", "not a Korean"),
        ("010-0123-4567", "not a Korean"),
        ("010-123-4567", "not a Korean"),  # 010 numbers have 11 digits
        ("02-0123-4567", "not a Korean"),
        ("070-0123-4567", "not a Korean"),
    ],
)
def test_given_invalid_numbers_when_normalized_then_refused(raw: str, why: str) -> None:
    with pytest.raises(InvalidPhoneNumberError, match=why):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("010-1234-5678", "01012345678"),
        ("+82 10 9999 0001", "01099990001"),
        ("011-234-5678", "0112345678"),  # 2G-era numbers still have 10 digits
        ("02-234-5678", "022345678"),
        ("070-1234-5678", "07012345678"),
    ],
)
def test_given_valid_numbers_when_normalized_then_national_digits(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_given_landline_or_voip_when_a_mobile_is_needed_then_refused() -> None:
    assert normalize_mobile("010-5555-0001") == "01055550001"
    for raw in ("070-1234-5678", "02-123-4567", "031-234-5678"):
        with pytest.raises(InvalidPhoneNumberError, match="mobile"):
            normalize_mobile(raw)


async def test_given_official_with_070_number_when_created_then_422(api: API) -> None:  # noqa: F811
    client, _ = api
    r = await client.post(
        "/v1/officials",
        headers=H,
        json={"district_code": "11620", "name": "주무관", "phone": "070-1234-5678"},
    )
    assert r.status_code == 422, r.text
    assert "mobile" in r.json()["detail"]


async def test_given_duplicate_unique_values_when_stored_then_409_with_reason(
    api: API,  # noqa: F811
) -> None:
    client, _ = api
    body = {"district_code": "11620", "name": "김", "phone": "01012345678", "external_ref": "A-1"}
    assert (await client.post("/v1/residents", headers=H, json=body)).status_code == 201
    r = await client.post("/v1/residents", headers=H, json=body)
    assert r.status_code == 409, r.text
    assert "external_ref" in r.json()["detail"]
    r = await client.post("/v1/districts", headers=H, json={"code": "11620", "name": "관악구"})
    assert r.status_code == 409
