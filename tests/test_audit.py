"""The access log (PIPA): every read and write of a resident, check-in, transcript, incident or
finding says who, when, from where and what; refused tries too; append-only; admins read it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from anbu.db.models import ApiKey, CallAttempt
from anbu.db.models_audit import AuditEntry
from anbu.domain.audit import AuditAction, action_for
from tests.api_support import Api, h, new_resident

ROOT = Path(__file__).resolve().parent.parent


async def _log(api: Api, **query: Any) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/audit", headers=h(api.keys["admin"]), params=query)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _key_id(api: Api, name: str) -> str:
    async with api.container.sessions() as s:
        return str((await s.execute(select(ApiKey.id).where(ApiKey.name == name))).scalar_one())


@pytest.mark.parametrize(
    ("method", "names_the_record", "action"),
    [
        ("GET", True, AuditAction.READ),
        ("GET", False, AuditAction.READ),
        ("PATCH", True, AuditAction.UPDATE),
        ("POST", False, AuditAction.UPDATE),
        ("DELETE", True, AuditAction.DELETE),
        ("DELETE", False, AuditAction.UPDATE),  # deleting a hold changes the resident's data
    ],
)
def test_given_a_method_on_a_record_path_then_the_action(
    method: str, names_the_record: bool, action: AuditAction
) -> None:
    assert action_for(method, names_the_record=names_the_record) is action


async def test_given_reads_and_writes_of_a_resident_then_each_is_logged_with_who_where_what(
    api: Api,
) -> None:
    rid = await new_resident(api)
    gwanak = h(api.keys["gwanak"])
    assert (await api.client.get(f"/v1/residents/{rid}", headers=gwanak)).status_code == 200
    r = await api.client.patch(f"/v1/residents/{rid}", headers=gwanak, json={"dong": "봉천동"})
    assert r.status_code == 200
    assert (await api.client.get("/v1/residents", headers=gwanak)).status_code == 200
    r = await api.client.get(f"/v1/residents/{rid}/call-holds", headers=gwanak)
    assert r.status_code == 200

    entries = await _log(api, resource_id=rid)
    key_id = await _key_id(api, "gwanak")
    seen = [(e["method"], e["route"], e["action"]) for e in reversed(entries)]
    assert seen == [
        ("POST", "/v1/residents", "create"),
        ("GET", "/v1/residents/{resident_id}", "read"),
        ("PATCH", "/v1/residents/{resident_id}", "update"),
        ("GET", "/v1/residents", "read"),
        ("GET", "/v1/residents/{resident_id}/call-holds", "read"),
    ]
    for e in entries:
        assert e["actor_kind"] == "api_key"
        assert e["actor_id"] == key_id
        assert e["actor_name"] == "gwanak"
        assert e["client"] == "198.51.100.7"
        assert e["resource_type"] == "resident"
        assert e["district_code"] == "11620"
        assert e["outcome"] == ""
        assert e["at"].startswith("2026-11-23T01:00:00")


async def test_given_another_districts_key_or_a_read_key_writing_then_the_try_is_logged_refused(
    api: Api,
) -> None:
    rid = await new_resident(api)
    r = await api.client.get(f"/v1/residents/{rid}", headers=h(api.keys["gangnam"]))
    assert r.status_code == 404
    r = await api.client.patch(
        f"/v1/residents/{rid}", headers=h(api.keys["gwanak-read"]), json={"dong": "x"}
    )
    assert r.status_code == 403
    refused = [e for e in await _log(api, resource_id=rid) if e["outcome"]]
    assert [(e["actor_name"], e["action"], e["outcome"]) for e in reversed(refused)] == [
        ("gangnam", "read", f"refused: resident {rid} not found"),
        ("gwanak-read", "update", "refused: this API key lacks the write scope (PATCH)"),
    ]
    assert all(e["district_code"] == "11620" for e in refused)


async def test_given_a_checkin_with_a_transcript_when_read_then_the_transcript_read_is_logged(
    api: Api,
) -> None:
    rid = await new_resident(api)
    r = await api.client.post(
        "/v1/checkins", headers=h(api.keys["gwanak"]), json={"resident_id": rid, "reason": "t"}
    )
    assert r.status_code == 202
    cid = r.json()["id"]
    async with api.container.sessions() as s:
        attempt = (
            await s.execute(select(CallAttempt).where(CallAttempt.checkin_id == cid))
        ).scalar_one()
        attempt.transcript = "네 괜찮아요"
        attempt_id = attempt.id
        await s.commit()
    r = await api.client.get(f"/v1/checkins/{cid}", headers=h(api.keys["admin"]))
    assert r.status_code == 200
    assert [e["action"] for e in await _log(api, resource_type="checkin")] == ["read", "create"]
    transcript = await _log(api, resource_type="transcript")
    assert [(e["resource_id"], e["actor_name"]) for e in transcript] == [(attempt_id, "admin")]


async def test_given_an_incident_id_when_read_then_logged_even_when_missing(api: Api) -> None:
    r = await api.client.get("/v1/incidents/nope", headers=h(api.keys["gwanak"]))
    assert r.status_code == 404
    (entry,) = await _log(api, resource_type="incident")
    assert entry["resource_id"] == "nope"
    assert entry["outcome"] == "refused: incident nope not found"
    assert entry["district_code"] is None


async def test_given_many_entries_when_paging_and_filtering_then_newest_first_and_complete(
    api: Api,
) -> None:
    rid = await new_resident(api)
    for _ in range(7):
        await api.client.get(f"/v1/residents/{rid}", headers=h(api.keys["gwanak"]))
    await api.client.get(f"/v1/residents/{rid}", headers=h(api.keys["admin"]))
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 3, "resource_id": rid, "action": "read"}
        if cursor is not None:
            query["cursor"] = cursor
        body = (
            await api.client.get("/v1/audit", headers=h(api.keys["admin"]), params=query)
        ).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ids = [e["id"] for page in pages for e in page]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert ids == sorted(ids, reverse=True)
    admin_id = await _key_id(api, "admin")
    assert [e["actor_name"] for e in await _log(api, actor_id=admin_id, resource_id=rid)] == [
        "admin"
    ]
    assert await _log(api, district_code="11680") == []
    assert len(await _log(api, since="2026-11-23T01:00:00Z", until="2026-11-23T01:00:01Z")) == 9


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"since": "2026-11-23T01:00:00"}, 422),  # no time zone
        ({"district_code": "00000"}, 422),
        ({"resource_type": "password"}, 422),
        ({"limit": 0}, 422),
    ],
)
async def test_given_bad_filters_then_422(api: Api, query: dict[str, Any], status: int) -> None:
    r = await api.client.get("/v1/audit", headers=h(api.keys["admin"]), params=query)
    assert r.status_code == status
    assert r.json()["error"] == "invalid_request"


async def test_given_a_district_key_when_reading_the_log_then_403(api: Api) -> None:
    r = await api.client.get("/v1/audit", headers=h(api.keys["gwanak"]))
    assert r.status_code == 403


async def test_given_the_database_when_a_log_row_is_changed_then_it_refuses(
    api: Api, db_url: str
) -> None:
    rid = await new_resident(api)
    engine = api.container.engine
    for statement in (
        update(AuditEntry).values(actor_name="someone else"),
        update(AuditEntry).where(AuditEntry.resource_id == rid).values(resource_id="x"),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(statement)
    if db_url.startswith("postgresql"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(delete(AuditEntry))
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE audit_log"))

        # The retention purge's own flag lets only rows older than 30 days go.
        async def purge_recent() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL anbu.audit_purge = 'on'"))
                await conn.execute(delete(AuditEntry).where(AuditEntry.resource_id == rid))

        with pytest.raises(DBAPIError, match="append-only"):
            await purge_recent()
    async with api.container.sessions() as s:
        rows = (await s.execute(select(AuditEntry))).scalars().all()
    assert [(r.resource_id, r.actor_name) for r in rows] == [(rid, "gwanak")]


def test_no_code_updates_or_deletes_the_log_but_the_retention_purge() -> None:
    writers = []
    for path in [
        *ROOT.glob("anbu/**/*.py"),
        *ROOT.glob("escalation/*.py"),
        *ROOT.glob("scheduler/*.py"),
    ]:
        source = path.read_text()
        if re.search(r"(update|delete)\(\s*AuditEntry|(UPDATE|DELETE FROM)\s+audit_log", source):
            writers.append(str(path.relative_to(ROOT)))
    assert writers in ([], ["anbu/services/retention.py"])


async def test_given_a_nul_in_a_refused_path_then_the_row_keeps_it_escaped(api: Api) -> None:
    from anbu.domain.audit import ActorKind, AuditResource
    from anbu.services.audit import Access, Actor, record

    async with api.container.sessions() as s:
        await record(
            s,
            Actor(ActorKind.API_KEY, "1", "probe"),
            [Access(AuditResource.RESIDENT, "a\x00b", AuditAction.READ)],
            at=api.clock.now(),
            outcome="refused: bad\x00id",
        )
        await s.commit()
    (entry,) = [e for e in await _log(api, resource_type="resident") if e["actor_name"] == "probe"]
    assert entry["resource_id"] == "a\\x00b"
    assert entry["outcome"] == "refused: bad\\x00id"
