"""The console's pages over real HTTP on SQLite and PostgreSQL, with incidents raised through
the real escalation service: 오늘, 사건 (acknowledge + finding through the service: the chain
stops), 대상자 (search, level filter, paging, the audited phone reveal), the access log, and
that nothing of another district shows."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from anbu.db.models import Resident
from anbu.db.models_audit import AuditEntry
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_escalation import Incident, OutboxMessage, ResidentFinding
from anbu.db.models_signals import MonitoringProfile
from anbu.domain.audit import ActorKind, AuditAction, AuditResource
from anbu.domain.console import ConsoleRole
from anbu.domain.escalation import Finding
from anbu.domain.incidents import AckChannel, IncidentStatus, OutboxStatus
from anbu.domain.risk import Level
from tests.api_support import Api
from tests.console_support import csrf_of, log_in, make_account, recent_incident, sign_in


async def official_entries(api: Api) -> list[AuditEntry]:
    async with api.container.sessions() as s:
        rows = await s.execute(
            select(AuditEntry)
            .where(AuditEntry.actor_kind == ActorKind.OFFICIAL)
            .order_by(AuditEntry.id)
        )
        return list(rows.scalars())


async def test_given_unanswered_case_when_official_acknowledges_in_console_then_chain_stops(
    api: Api,
) -> None:
    sessions = api.container.sessions
    seeded = await recent_incident(api)
    primary = seeded.world.officials["primary"]
    assert (await sign_in(api, "kim", official_id=primary.id)).status_code == 303

    today = await api.client.get("/console")
    assert today.status_code == 200
    assert f"/console/incidents/{seeded.incident_id}" in today.text
    assert "김안부" in today.text
    assert "primary 담당 (발송됨)" in today.text
    assert "남음" in today.text  # the acknowledgement clock runs

    page = await api.client.get(f"/console/incidents/{seeded.incident_id}")
    assert page.status_code == 200
    assert page.text.count("받지 않음") == 3  # every call, in one column
    assert "원인 19" in page.text
    assert "primary 담당: 발송됨" in page.text

    r = await api.client.post(
        f"/console/incidents/{seeded.incident_id}/ack",
        data={"csrf": "forged", "finding": "visited"},
    )
    assert r.status_code == 403
    r = await api.client.post(
        f"/console/incidents/{seeded.incident_id}/ack",
        data={"csrf": csrf_of(page.text), "finding": "visited", "note": "방문, 건강함"},
    )
    assert r.status_code == 303
    after = await api.client.get(r.headers["location"])
    assert "방문 확인 · 방문, 건강함" in after.text
    assert "확인하고 기록" not in after.text

    async with sessions() as s:
        incident = await s.get(Incident, seeded.incident_id)
        assert incident is not None
        assert incident.status is IncidentStatus.ACKNOWLEDGED
        assert incident.ack_channel is AckChannel.CONSOLE
        assert incident.acknowledged_by == primary.id
        assert incident.finding is Finding.VISITED
        [found] = (await s.execute(select(ResidentFinding))).scalars().all()
        assert found.note == "방문, 건강함"
    # Long past the primary's clock: the backup is never told.
    assert await seeded.service.escalate_due(api.clock.now() + dt.timedelta(hours=2)) == 0
    async with sessions() as s:
        to_backup = (
            await s.execute(
                select(OutboxMessage).where(
                    OutboxMessage.official_id == seeded.world.officials["backup"].id
                )
            )
        ).all()
        assert to_backup == []
        statuses = (await s.execute(select(OutboxMessage.status))).scalars().all()
        assert list(statuses) == [OutboxStatus.SENT]

    today = await api.client.get("/console")
    assert f"/console/incidents/{seeded.incident_id}" not in today.text
    logged = {(e.resource_type, e.resource_id, e.action) for e in await official_entries(api)}
    assert (AuditResource.INCIDENT, seeded.incident_id, AuditAction.READ) in logged
    assert (AuditResource.INCIDENT, seeded.incident_id, AuditAction.UPDATE) in logged
    assert (AuditResource.FINDING, seeded.incident_id, AuditAction.CREATE) in logged
    assert (AuditResource.RESIDENT, seeded.world.resident_id, AuditAction.READ) in logged


async def test_given_another_districts_official_then_none_of_it_shows(api: Api) -> None:
    sessions = api.container.sessions
    seeded = await recent_incident(api)
    assert (await sign_in(api, "gangnam", district="11680", name="강남")).status_code == 303

    today = await api.client.get("/console")
    assert "김안부" not in today.text
    assert seeded.incident_id not in today.text
    r = await api.client.get(f"/console/incidents/{seeded.incident_id}")
    assert r.status_code == 404
    assert "김안부" not in r.text
    r = await api.client.get(f"/console/residents/{seeded.world.resident_id}")
    assert r.status_code == 404
    listing = await api.client.get("/console/residents", params={"q": "김"})
    assert "김안부" not in listing.text
    r = await api.client.post(
        f"/console/incidents/{seeded.incident_id}/ack",
        data={"csrf": csrf_of(today.text), "finding": "safe"},
    )
    assert r.status_code == 404
    async with sessions() as s:
        incident = await s.get(Incident, seeded.incident_id)
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN
    refused = [e for e in await official_entries(api) if e.outcome.startswith("refused")]
    assert {e.resource_id for e in refused} == {
        seeded.incident_id,
        seeded.world.resident_id,
    }


async def test_given_residents_when_searching_filtering_paging_and_revealing_then_audited(
    api: Api,
) -> None:
    sessions = api.container.sessions
    async with sessions() as s:
        district_id = 1
        for n in range(60):
            s.add(
                Resident(
                    id=f"r{n:03d}",
                    district_id=district_id,
                    name=f"이름{n:03d}",
                    phone=f"0102000{n:04d}",
                    dong="봉천동" if n % 2 else "신림동",
                )
            )
        s.add(MonitoringProfile(resident_id="r007", level=Level.SERIOUS))
        await s.commit()
    await sign_in(api, "kim")

    first = await api.client.get("/console/residents")
    assert first.text.count('href="/console/residents/r') == 50
    assert "page=2" in first.text
    second = await api.client.get("/console/residents", params={"page": 2})
    assert second.text.count('href="/console/residents/r') == 10
    by_dong = await api.client.get("/console/residents", params={"q": "봉천"})
    assert by_dong.text.count('href="/console/residents/r') == 30
    by_name = await api.client.get("/console/residents", params={"q": "이름007"})
    assert by_name.text.count('href="/console/residents/r') == 1
    serious = await api.client.get("/console/residents", params={"level": "serious"})
    assert 'href="/console/residents/r007"' in serious.text
    assert serious.text.count('href="/console/residents/r') == 1
    assert "010-****-0007" in serious.text or "*******0007" in serious.text

    page = await api.client.get("/console/residents/r007")
    assert page.status_code == 200
    assert "01020000007" not in page.text
    shown = await api.client.post(
        "/console/residents/r007/reveal", data={"csrf": csrf_of(page.text)}
    )
    assert shown.status_code == 200
    assert "01020000007" in shown.text
    entries = await official_entries(api)
    reveals = [e for e in entries if e.outcome == "phone revealed"]
    assert [(e.resource_id, e.route) for e in reveals] == [
        ("r007", "/console/residents/{resident_id}/reveal")
    ]
    listed = {e.resource_id for e in entries if e.route == "/console/residents"}
    assert len(listed) == 60  # every person a list showed


async def test_given_an_analyst_then_no_names_and_no_actions(api: Api) -> None:
    seeded = await recent_incident(api)
    await sign_in(api, "ana", role=ConsoleRole.ANALYST)
    today = await api.client.get("/console")
    assert "김○○" in today.text
    assert "김안부" not in today.text
    page = await api.client.get(f"/console/incidents/{seeded.incident_id}")
    assert page.status_code == 200
    assert "김안부" not in page.text
    assert "확인하고 기록" not in page.text
    r = await api.client.post(
        f"/console/incidents/{seeded.incident_id}/ack",
        data={"csrf": csrf_of(page.text), "finding": "safe"},
    )
    assert r.status_code == 403


async def test_given_an_official_of_one_dong_then_other_dongs_do_not_show(api: Api) -> None:
    sessions = api.container.sessions
    seeded = await recent_incident(api)
    await make_account(sessions, api.clock.now(), "bong")
    async with sessions() as s:
        account = (
            await s.execute(select(ConsoleAccount).where(ConsoleAccount.login == "bong"))
        ).scalar_one()
        account.dong = "봉천동"  # the resident lives in 신림동
        await s.commit()
    await log_in(api.client, "bong")
    assert "김안부" not in (await api.client.get("/console")).text
    r = await api.client.get(f"/console/incidents/{seeded.incident_id}")
    assert r.status_code == 404
    assert "김안부" not in (await api.client.get("/console/residents")).text
