"""Outcome feedback is shown and reversible in the console (issue 14): the widening a finding
made to a person's quiet window is listed on their page, an official undoes it (CSRF-checked,
audited), the profile's widening in force follows, and another district's step is refused."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from anbu.db.models_audit import AuditEntry
from anbu.db.models_feedback import FeedbackStep
from anbu.db.models_signals import MonitoringProfile
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.console import ConsoleRole
from anbu.domain.risk import Channel
from anbu.risk import feedback
from tests.api_support import Api
from tests.console_support import csrf_of, log_in, make_account, recent_incident


async def test_given_widening_from_false_alarm_when_official_reverts_in_console_then_undone(
    api: Api,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    seeded = await recent_incident(api)
    other = await recent_incident(api, code="11680", name="이강남", dong="역삼동")
    resident_id = seeded.world.resident_id
    async with sessions() as s:
        s.add(MonitoringProfile(resident_id=resident_id, widen_h="calls=24"))
        s.add(MonitoringProfile(resident_id=other.world.resident_id, widen_h="calls=24"))
        step = FeedbackStep(
            resident_id=resident_id,
            channel=Channel.CALLS,
            hours=24.0,
            finding="false_alarm",
            incident_id=seeded.incident_id,
            created_at=now - dt.timedelta(days=1),
        )
        foreign = FeedbackStep(
            resident_id=other.world.resident_id,
            channel=Channel.CALLS,
            hours=24.0,
            finding="quiet_habit",
            created_at=now - dt.timedelta(days=1),
        )
        s.add_all([step, foreign])
        await s.commit()
        step_id, foreign_id = step.id, foreign.id
    await make_account(sessions, now, "kim", official_id=seeded.world.officials["primary"].id)
    await make_account(sessions, now, "viewer", role=ConsoleRole.ANALYST)
    assert (await log_in(api.client, "kim")).status_code == 303

    page = await api.client.get(f"/console/residents/{resident_id}")
    assert page.status_code == 200
    assert "통화 +24시간 · 오경보" in page.text
    revert = f"/console/residents/{resident_id}/feedback/{step_id}/revert"
    assert revert in page.text

    # A forged form changes nothing; another district's step through this person: 404.
    assert (await api.client.post(revert, data={"csrf": "forged"})).status_code == 403
    r = await api.client.post(
        f"/console/residents/{resident_id}/feedback/{foreign_id}/revert",
        data={"csrf": csrf_of(page.text)},
    )
    assert r.status_code == 404
    assert "되돌릴 기록을 찾을 수 없습니다" in r.text

    r = await api.client.post(revert, data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    after = await api.client.get(r.headers["location"])
    assert "되돌림" in after.text
    assert revert not in after.text

    async with sessions() as s:
        stored = await s.get(FeedbackStep, step_id)
        assert stored is not None
        assert stored.reverted_at is not None
        assert stored.reverted_why == "console: kim"
        profile = await s.get(MonitoringProfile, resident_id)
        assert profile is not None
        assert feedback.widening_in_force(profile) == {}
        untouched = await s.get(FeedbackStep, foreign_id)
        assert untouched is not None
        assert untouched.reverted_at is None
        updates = (
            (
                await s.execute(
                    select(AuditEntry).where(
                        AuditEntry.action == AuditAction.UPDATE,
                        AuditEntry.resource_type == AuditResource.RESIDENT,
                        AuditEntry.resource_id == resident_id,
                    )
                )
            )
            .scalars()
            .all()
        )
        assert [u.outcome for u in updates] == ["feedback widening reverted"]

    # A read-only account (the foundation's analyst) sees the list, without the button.
    await api.client.post("/console/logout", data={"csrf": csrf_of(after.text)})
    assert (await log_in(api.client, "viewer")).status_code == 303
    view = await api.client.get(f"/console/residents/{resident_id}")
    assert view.status_code == 200
    assert "통화 +24시간" in view.text
    assert "되돌리기" not in view.text


async def test_given_a_finding_about_a_low_record_when_listed_then_a_stricter_guard_not_zero_hours(
    api: Api,
) -> None:
    # A finding about a 관심 record (nobody called) is stored as a 0-hour step: it tightens the
    # channel's lone-LOW guard and widens nothing, so "+0시간" would tell an official nothing.
    sessions = api.container.sessions
    now = api.clock.now()
    seeded = await recent_incident(api)
    resident_id = seeded.world.resident_id
    async with sessions() as s:
        s.add(MonitoringProfile(resident_id=resident_id, widen_h="calls=0"))
        s.add(
            FeedbackStep(
                resident_id=resident_id,
                channel=Channel.CALLS,
                hours=0.0,
                finding="quiet_habit",
                created_at=now - dt.timedelta(days=1),
            )
        )
        await s.commit()
    await make_account(sessions, now, "kim", official_id=seeded.world.officials["primary"].id)
    assert (await log_in(api.client, "kim")).status_code == 303
    page = await api.client.get(f"/console/residents/{resident_id}")
    assert page.status_code == 200
    assert "통화 관심 기준 강화" in page.text
    assert "+0시간" not in page.text
