"""Calling programmes per district, on SQLite and PostgreSQL: a 구 관리자 who edits a shared
programme edits their district's own version of it; residents of another district keep their
hours (what the dispatcher reads, ``load_rules``, and what the API shows); another district's
programme is "not found" in the console and the API; the resolution itself, table-driven."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.migrate import upgrade
from anbu.db.models import Checkin, District, Resident
from anbu.db.models_audit import AuditEntry
from anbu.db.models_scheduling import DispatcherWorker, Program, ResidentSchedule, RoutineSchedule
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.audit import AuditResource
from anbu.domain.calling_hours import CallingWindow
from anbu.domain.checkin import CheckinSource
from anbu.domain.console import ConsoleRole
from anbu.domain.escalation import SEOUL
from anbu.domain.program_scope import ProgramBook, ProgramKey
from anbu.domain.retry import RetryPolicy
from anbu.services.checkins import open_checkin
from anbu.services.rules import followed_programs, load_rules
from scheduler.claims import claim_due
from scheduler.dispatcher import SEVERE_PRIORITY
from tests.api_support import Api, api_over, h, new_resident
from tests.console_support import csrf_of, log_in, make_account
from tests.db_fixtures import BACKENDS, create_pg_database, drop_pg_database, pg_url

GWANAK, GANGNAM = "11620", "11680"
WED_10 = dt.datetime(2026, 11, 25, 10, tzinfo=SEOUL).astimezone(dt.UTC)  # not a holiday
GOOD = {"start": "10:00", "end": "12:00", "max_attempts": "2", "interval_min": "15"}


# -- the resolution, pure ----------------------------------------------------------------------

SHARED_DEFAULT = ProgramKey(1, None, None, True)
SHARED_EVENING = ProgramKey(2, None, None, False)
A_VERSION_OF_DEFAULT = ProgramKey(3, 10, 1, False)  # district 10's version of programme 1
A_OWN_DEFAULT = ProgramKey(4, 10, None, True)
B_OWN = ProgramKey(5, 20, None, False)


@pytest.mark.parametrize(
    ("programs", "district", "chosen", "follows"),
    [
        # No programme at all: the built-in defaults.
        ([], 10, None, None),
        # The shared default for everyone while no district has a version of it.
        ([SHARED_DEFAULT, SHARED_EVENING], 10, None, 1),
        ([SHARED_DEFAULT, SHARED_EVENING], 20, 2, 2),
        # District 10's version stands in for the shared default there, not in district 20.
        ([SHARED_DEFAULT, A_VERSION_OF_DEFAULT], 10, None, 3),
        ([SHARED_DEFAULT, A_VERSION_OF_DEFAULT], 10, 1, 3),
        ([SHARED_DEFAULT, A_VERSION_OF_DEFAULT], 20, None, 1),
        ([SHARED_DEFAULT, A_VERSION_OF_DEFAULT], 20, 1, 1),
        # A district's own default beats the shared one, in that district only.
        ([SHARED_DEFAULT, A_OWN_DEFAULT], 10, None, 4),
        ([SHARED_DEFAULT, A_OWN_DEFAULT], 20, None, 1),
        # Another district's programme never applies: the district's default does.
        ([SHARED_DEFAULT, B_OWN], 10, 5, 1),
        ([SHARED_DEFAULT, B_OWN], 20, 5, 5),
        # A chosen programme that is gone: the default.
        ([SHARED_DEFAULT], 10, 99, 1),
    ],
)
def test_given_programmes_when_resolving_for_a_district_then_its_own_version_applies(
    programs: list[ProgramKey], district: int, chosen: int | None, follows: int | None
) -> None:
    assert ProgramBook(programs).resolve(district, chosen) == follows


# -- storage and console, both backends ---------------------------------------------------------


async def _post(client: httpx.AsyncClient, path: str, **data: str) -> tuple[int, str]:
    page = await client.get("/console/settings")
    assert page.status_code == 200
    r = await client.post(path, data={"csrf": csrf_of(page.text), **data})
    return r.status_code, html.unescape(r.text)


async def _hours(api: Api, resident_id: str, phone: str) -> tuple[str, str, int]:
    async with api.container.sessions() as s:
        rules = (
            await load_rules(
                s,
                [(resident_id, phone)],
                api.clock.now(),
                default_policy=RetryPolicy(),
                default_window=CallingWindow(),
            )
        )[resident_id]
    window = rules.window
    return (
        window.start.strftime("%H:%M"),
        window.end.strftime("%H:%M"),
        rules.policy.max_attempts,
    )


async def _district_id(api: Api, code: str) -> int:
    async with api.container.sessions() as s:
        found = await s.scalar(select(District.id).where(District.code == code))
    assert found is not None
    return found


async def test_given_shared_default_when_district_a_admin_edits_it_then_b_keeps_its_hours(
    db_url: str,
) -> None:
    async with api_over(db_url) as api:
        sessions = api.container.sessions
        async with sessions() as s:
            shared = Program(name="기본 안부", is_default=True, start_min=9 * 60, end_min=18 * 60)
            s.add(shared)
            await s.commit()
            shared_id = shared.id
        in_a = await new_resident(api, "gwanak", "010-1111-2222", GWANAK)
        in_b = await new_resident(api, "gangnam", "010-3333-4444", GANGNAM)
        before = await _hours(api, in_b, "01033334444")
        assert before == ("09:00", "18:00", 3)

        await make_account(
            sessions, api.clock.now(), "gwanak-boss", role=ConsoleRole.DISTRICT_ADMIN
        )
        await log_in(api.client, "gwanak-boss")
        page = html.unescape((await api.client.get("/console/settings")).text)
        assert "기본 안부 (기본) · 공통" in page
        status, text = await _post(api.client, f"/console/settings/programs/{shared_id}", **GOOD)
        assert status == 200, text
        assert "기본 안부 (관악구)의 전화 규칙을 저장했습니다 (우리 구에만 적용)." in text
        assert "기본 안부 (관악구) (기본) · 우리 구 전용" in text

        # The dispatcher's reading: A's resident follows A's version, B's the shared one.
        assert await _hours(api, in_a, "01011112222") == ("10:00", "12:00", 2)
        assert await _hours(api, in_b, "01033334444") == before
        async with sessions() as s:
            stored = await s.get(Program, shared_id)
            assert stored is not None
            assert (stored.start_min, stored.end_min, stored.max_attempts) == (540, 1080, 3)
            version = await s.scalar(select(Program).where(Program.replaces_id == shared_id))
            assert version is not None
            assert version.district_id == await _district_id(api, GWANAK)
            version_id = version.id
            logged = await s.scalar(
                select(AuditEntry).where(AuditEntry.resource_type == AuditResource.PROGRAM)
            )
            assert logged is not None
            assert logged.resource_id == str(version_id)
        # A second edit (even from a page still naming the shared programme) edits the version.
        status, text = await _post(
            api.client, f"/console/settings/programs/{shared_id}", **{**GOOD, "end": "13:00"}
        )
        assert status == 200, text
        assert await _hours(api, in_a, "01011112222") == ("10:00", "13:00", 2)
        async with sessions() as s:
            count = len((await s.scalars(select(Program))).all())
            assert count == 2

        # The API shows the same: B's resident keeps 09:00-18:00, A's follows its version.
        r = await api.client.get(f"/v1/residents/{in_b}/schedule", headers=h(api.keys["gangnam"]))
        assert r.status_code == 200, r.text
        effective = r.json()["effective"]
        assert (effective["program_id"], effective["calling_hours"]["start"]) == (
            shared_id,
            "09:00",
        )
        r = await api.client.get(f"/v1/residents/{in_a}/schedule", headers=h(api.keys["gwanak"]))
        assert r.json()["effective"]["program_id"] == version_id

        # District B's admin neither sees nor changes A's version.
        other = httpx.AsyncClient(transport=api.client._transport, base_url="http://anbu")
        async with other:
            await make_account(
                sessions,
                api.clock.now(),
                "gangnam-boss",
                role=ConsoleRole.DISTRICT_ADMIN,
                district=GANGNAM,
            )
            await log_in(other, "gangnam-boss")
            page = html.unescape((await other.get("/console/settings")).text)
            assert "관악구" not in page
            assert "기본 안부 (기본) · 공통" in page
            status, text = await _post(other, f"/console/settings/programs/{version_id}", **GOOD)
            assert status == 422
            assert "프로그램을 찾을 수 없습니다." in text
        assert await _hours(api, in_a, "01011112222") == ("10:00", "13:00", 2)

        # The API: a district key sees the shared programmes and its own, not another's.
        listed = await api.client.get("/v1/programs", headers=h(api.keys["gangnam"]))
        assert [p["id"] for p in listed.json()] == [shared_id]
        listed = await api.client.get("/v1/programs", headers=h(api.keys["gwanak"]))
        assert [(p["id"], p["district_code"], p["replaces_id"]) for p in listed.json()] == [
            (shared_id, None, None),
            (version_id, GWANAK, shared_id),
        ]
        r = await api.client.get(f"/v1/programs/{version_id}", headers=h(api.keys["gangnam"]))
        assert r.status_code == 404
        r = await api.client.patch(
            f"/v1/programs/{version_id}",
            headers=h(api.keys["gangnam"]),
            json={"calling_hours": {"start": "07:00"}},
        )
        assert r.status_code == 404
        # Nor can B's resident be put on A's programme.
        r = await api.client.put(
            f"/v1/residents/{in_b}/schedule",
            headers=h(api.keys["gangnam"]),
            json={"program_id": version_id},
        )
        assert r.status_code == 422
        assert "unknown programme" in r.text


async def test_given_district_keys_when_managing_programmes_then_only_their_districts(
    db_url: str,
) -> None:
    async with api_over(db_url) as api:
        admin, gwanak = h(api.keys["admin"]), h(api.keys["gwanak"])
        r = await api.client.post("/v1/programs", headers=gwanak, json={"name": "공통"})
        assert r.status_code == 403  # a shared programme moves every district's calls
        r = await api.client.post("/v1/programs", headers=admin, json={"name": "공통"})
        assert r.status_code == 201, r.text
        shared = r.json()
        assert shared["district_code"] is None
        r = await api.client.patch(
            f"/v1/programs/{shared['id']}", headers=gwanak, json={"name": "바꿈"}
        )
        assert r.status_code == 403
        r = await api.client.post(
            "/v1/programs",
            headers=gwanak,
            json={"name": "관악 오전", "district_code": GANGNAM, "is_default": True},
        )
        assert r.status_code == 422  # another district's code is unknown to this key
        r = await api.client.post(
            "/v1/programs",
            headers=gwanak,
            json={
                "name": "관악 오전",
                "district_code": GWANAK,
                "is_default": True,
                "calling_hours": {"start": "08:00", "end": "11:00"},
            },
        )
        assert r.status_code == 201, r.text
        own = r.json()
        r = await api.client.post(
            "/v1/programs",
            headers=gwanak,
            json={"name": "관악 공통 대신", "district_code": GWANAK, "replaces_id": own["id"]},
        )
        assert r.status_code == 422  # only a shared programme is stood in for
        r = await api.client.patch(
            f"/v1/programs/{own['id']}",
            headers=gwanak,
            json={"calling_hours": {"end": "12:00"}},
        )
        assert r.status_code == 200, r.text
        # The district's default beats the shared default there only.
        in_a = await new_resident(api, "gwanak", "010-1111-2222", GWANAK)
        in_b = await new_resident(api, "gangnam", "010-3333-4444", GANGNAM)
        r = await api.client.patch(
            f"/v1/programs/{shared['id']}", headers=admin, json={"is_default": True}
        )
        assert r.status_code == 200, r.text
        async with api.container.sessions() as s:
            defaults = (await s.scalars(select(Program.id).where(Program.is_default))).all()
        assert sorted(defaults) == sorted([shared["id"], own["id"]])  # one per scope
        assert (await _hours(api, in_a, "01011112222"))[:2] == ("08:00", "12:00")
        assert (await _hours(api, in_b, "01033334444"))[:2] == ("09:00", "18:00")


async def test_given_residents_own_hours_when_admin_narrows_programme_then_refused(
    db_url: str,
) -> None:
    async with api_over(db_url) as api:
        sessions = api.container.sessions
        async with sessions() as s:
            shared = Program(name="기본 안부", is_default=True, weekdays="0123456")
            s.add(shared)
            await s.commit()
            shared_id = shared.id
        late = await new_resident(api, "gwanak", "010-1111-2222", GWANAK)
        routine = await new_resident(api, "gwanak", "010-5555-6666", GWANAK)
        async with sessions() as s:
            s.add(ResidentSchedule(resident_id=late, start_min=14 * 60))
            s.add(RoutineSchedule(resident_id=routine, weekday=0, time_min=16 * 60))
            await s.commit()
        await make_account(sessions, api.clock.now(), "boss", role=ConsoleRole.DISTRICT_ADMIN)
        await log_in(api.client, "boss")
        status, text = await _post(api.client, f"/console/settings/programs/{shared_id}", **GOOD)
        assert status == 422
        assert "대상자 2명의 개인 통화 시간이나 정기 안부 전화가 통화 시간 밖에" in text
        async with sessions() as s:
            assert len((await s.scalars(select(Program))).all()) == 1  # nothing made
        # Wide enough for both: stored.
        status, text = await _post(
            api.client,
            f"/console/settings/programs/{shared_id}",
            **{**GOOD, "start": "08:00", "end": "20:00"},
        )
        assert status == 200, text
        assert await _hours(api, late, "01011112222") == ("14:00", "20:00", 2)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_given_programmes_before_0013_when_migrated_then_shared_and_followed_as_before(
    backend: str, tmp_path: Path
) -> None:
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    else:
        name = await create_pg_database()
        url = pg_url(name)
    engine = make_engine(url)
    try:
        await upgrade(engine, "0012_voice_accessibility")
        t = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
        t0 = t if backend == "postgresql" else t.replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO districts (id, code, name, created_at) VALUES (1, '1', 'g', :t)"),
                {"t": t0},
            )
            for rid in ("r1", "r2"):
                await conn.execute(
                    text(
                        "INSERT INTO residents (id, district_id, name, phone, dong, active,"
                        " created_at, updated_at) VALUES (:r, 1, 'n', '010', '', true, :t, :t)"
                    ),
                    {"r": rid, "t": t0},
                )
            for pid, pname, default, start in ((1, "기본", True, 540), (2, "오후", False, 780)):
                await conn.execute(
                    text(
                        "INSERT INTO programs (id, name, is_default, max_attempts, interval_s,"
                        " busy_interval_s, failure_interval_s, max_callbacks, callback_delay_s,"
                        " tz, start_min, end_min, weekdays, call_on_holidays, severe_start_min,"
                        " severe_end_min, created_at, updated_at) VALUES (:id, :n, :d, 3, 600,"
                        " 180, 120, 1, 3600, 'Asia/Seoul', :s, 1080, '01234', false, 420,"
                        " 1320, :t, :t)"
                    ),
                    {"id": pid, "n": pname, "d": default, "s": start, "t": t0},
                )
            await conn.execute(
                text(
                    "INSERT INTO resident_schedules (resident_id, program_id, updated_at)"
                    " VALUES ('r2', 2, :t)"
                ),
                {"t": t0},
            )
        await upgrade(engine)
        async with make_sessionmaker(engine)() as s:
            rows = (await s.execute(select(Program.id, Program.district_id))).all()
            assert sorted(tuple(r) for r in rows) == [(1, None), (2, None)]
            followed = await followed_programs(s, ["r1", "r2"])
        assert {rid: f.program.id for rid, f in followed.items() if f.program} == {
            "r1": 1,
            "r2": 2,
        }
    finally:
        await engine.dispose()
        if name is not None:
            await drop_pg_database(name)


async def test_given_a_districts_version_when_the_dispatcher_claims_then_each_district_its_hours(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Wednesday 10:00 KST. The shared default calls 09:00-18:00; 관악구's version of it only
    # 13:00-18:00 with one try: 관악구's check-in waits for 13:00, 강남구's rings now.
    async with sessions() as s:
        gwanak = District(code=GWANAK, name="관악구")
        gangnam = District(code=GANGNAM, name="강남구")
        in_a = Resident(district=gwanak, name="관악", phone="01011112222", dong="신림동")
        in_b = Resident(district=gangnam, name="강남", phone="01033334444", dong="역삼동")
        shared = Program(name="기본", is_default=True, start_min=9 * 60, end_min=18 * 60)
        s.add_all([in_a, in_b, shared])
        await s.flush()
        s.add(
            Program(
                name="기본 (관악구)",
                district_id=gwanak.id,
                replaces_id=shared.id,
                start_min=13 * 60,
                end_min=18 * 60,
                max_attempts=1,
            )
        )
        a, _ = await open_checkin(s, in_a, source=CheckinSource.API, reason="a", now=WED_10)
        b, _ = await open_checkin(s, in_b, source=CheckinSource.API, reason="b", now=WED_10)
        worker = DispatcherWorker(host="test", pid=1)
        s.add(worker)
        await s.commit()
        worker_id = worker.id
    async with sessions() as s:
        out = await claim_due(
            s,
            worker_id=worker_id,
            now=WED_10,
            global_cap=10,
            can_start=lambda _t: "engine",
            limit=10,
            trunk_of=lambda _n: "trunk",
            severe_priority=SEVERE_PRIORITY,
            default_policy=RetryPolicy(),
            default_window=CallingWindow(),
        )
        await s.commit()
    assert [c.checkin_id for c in out.claimed] == [b.id]
    assert [c.policy.max_attempts for c in out.claimed] == [3]
    async with sessions() as s:
        waiting = await s.get(Checkin, a.id)
        assert waiting is not None
        assert waiting.attempts[0].scheduled_for == dt.datetime(
            2026, 11, 25, 13, tzinfo=SEOUL
        ).astimezone(dt.UTC)
