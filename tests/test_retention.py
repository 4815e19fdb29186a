"""Retention per record kind, on both databases: what is past its keep goes (transcripts
erased, closed check-ins with their attempts, acknowledged incidents with everything about
them, old access log rows), open cases are never deleted, recent rows stay."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import build_container
from anbu.cli import build_parser
from anbu.db.models import ApiKey, CallAttempt, Checkin, District, Resident
from anbu.db.models_audit import AuditEntry
from anbu.db.models_escalation import (
    InboundSms,
    Incident,
    IncidentEvent,
    OutboxMessage,
    ResidentFinding,
)
from anbu.db.models_webhooks import DeliveryState, WebhookDelivery
from anbu.domain.audit import ActorKind, AuditAction, AuditResource
from anbu.domain.checkin import AttemptStatus, CheckinStatus, Outcome
from anbu.domain.escalation import Finding, Urgency
from anbu.domain.incidents import IncidentEventKind, IncidentStatus, OutboxStatus
from anbu.domain.sms_text import SmsKind
from anbu.services.audit import Access, Actor, record
from anbu.services.retention import RetentionPolicy, apply_retention
from anbu.settings import Settings
from scheduler.service import build_scheduler

# Real time: PostgreSQL's append-only trigger judges an audit row's age by the server's clock.
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
POLICY = RetentionPolicy(
    transcripts_days=90, attempts_days=365, incidents_days=1095, audit_days=730
)


async def _case(
    s: AsyncSession,
    resident: Resident,
    name: str,
    age: dt.timedelta,
    status: CheckinStatus = CheckinStatus.COMPLETED,
    incident: IncidentStatus | None = None,
) -> str:
    at = NOW - age
    final = status.is_final
    checkin = Checkin(
        id=name,
        resident_id=resident.id,
        reason=name,
        status=status,
        outcome=Outcome.UNREACHABLE if final else None,
        created_at=at,
        updated_at=at,
        closed_at=at if final else None,
    )
    s.add(checkin)
    for no in (1, 2):
        s.add(
            CallAttempt(
                checkin_id=name,
                attempt_no=no,
                number=resident.phone,
                status=AttemptStatus.FINISHED if final else AttemptStatus.SCHEDULED,
                transcript=f"{name} 네 괜찮아요",
                scheduled_for=at,
                ended_at=at if final else None,
            )
        )
    if incident is not None:
        acked = incident is IncidentStatus.ACKNOWLEDGED
        s.add(
            Incident(
                id=f"inc-{name}",
                checkin_id=name,
                resident_id=resident.id,
                district_id=resident.district_id,
                outcome=Outcome.UNREACHABLE,
                urgency=Urgency.NORMAL,
                status=incident,
                code="1234",
                case_closed_at=at,
                opened_at=at,
                acknowledged_at=at if acked else None,
                closed_at=at if acked else None,
            )
        )
        await s.flush()
        s.add(IncidentEvent(incident_id=f"inc-{name}", at=at, kind=IncidentEventKind.OPENED))
        s.add(
            OutboxMessage(
                reference=uuid.uuid4().hex,
                incident_id=f"inc-{name}",
                to="01099990001",
                sender="0212345678",
                kind=SmsKind.SMS,
                text="안부",
                status=OutboxStatus.SENT,
                next_attempt_at=at,
                created_at=at,
            )
        )
        s.add(
            InboundSms(sender="01099990001", text="1234", received_at=at, incident_id=f"inc-{name}")
        )
        if acked:
            s.add(
                ResidentFinding(
                    resident_id=resident.id, incident_id=f"inc-{name}", finding=Finding.SAFE, at=at
                )
            )
    return name


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        district = District(code="11620", name="관악구")
        s.add(district)
        await s.flush()
        resident = Resident(district_id=district.id, name="김안부", phone="01099990001")
        s.add(resident)
        await s.flush()
        await _case(s, resident, "old-closed", 400 * DAY)
        await _case(s, resident, "old-open", 400 * DAY, status=CheckinStatus.PENDING)
        await _case(s, resident, "mid-closed", 100 * DAY)
        await _case(s, resident, "recent-closed", 10 * DAY)
        await _case(s, resident, "old-acked", 1200 * DAY, incident=IncidentStatus.ACKNOWLEDGED)
        await _case(s, resident, "old-exhausted", 1200 * DAY, incident=IncidentStatus.EXHAUSTED)
        await _case(s, resident, "old-still-open", 1200 * DAY, incident=IncidentStatus.OPEN)
        await _case(s, resident, "recent-acked", 10 * DAY, incident=IncidentStatus.ACKNOWLEDGED)
        key = ApiKey(name="hook", key_hash="h" * 64, is_admin=True, scopes="read,write,admin")
        s.add(key)
        await s.flush()
        for n, (state, days) in enumerate(
            [
                (DeliveryState.DELIVERED, 400),
                (DeliveryState.FAILED, 400),
                (DeliveryState.CANCELLED, 400),
                (DeliveryState.PENDING, 400),  # still owed to the receiver: kept
                (DeliveryState.DELIVERED, 10),
            ]
        ):
            s.add(
                WebhookDelivery(
                    event_id=f"ev{n}",
                    api_key_id=key.id,
                    event_type="checkin.closed",
                    body="{}",
                    status=state,
                    next_attempt_at=NOW - days * DAY,
                    created_at=NOW - days * DAY,
                )
            )
        actor = Actor(ActorKind.API_KEY, "1", "test")
        for days in (800, 731, 729, 10):
            await record(
                s,
                actor,
                [Access(AuditResource.RESIDENT, f"audit-{days}", AuditAction.READ)],
                at=NOW - days * DAY,
            )
        await s.commit()


async def _state(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as s:
        attempts = (await s.execute(select(CallAttempt))).scalars().all()
        return {
            "checkins": sorted((await s.execute(select(Checkin.id))).scalars()),
            "transcripts": sorted({a.checkin_id for a in attempts if a.transcript is not None}),
            "attempts": len(attempts),
            "incidents": sorted((await s.execute(select(Incident.id))).scalars()),
            "audit": sorted((await s.execute(select(AuditEntry.resource_id))).scalars()),
            "webhooks": sorted((await s.execute(select(WebhookDelivery.event_id))).scalars()),
            "rest": [
                (await s.execute(select(func.count()).select_from(t))).scalar()
                for t in (IncidentEvent, OutboxMessage, InboundSms, ResidentFinding)
            ],
        }


EXPECTED = {
    "checkins": sorted(
        [
            "mid-closed",  # younger than the attempts' 365 days
            "old-exhausted",  # its incident is still waiting
            "old-open",  # an open case, however old
            "old-still-open",
            "recent-acked",
            "recent-closed",
        ]
    ),
    # Past their 90 days: old-closed, mid-closed, old-acked (2 attempts each); old-open's case
    # is not closed, and the exhausted and open incidents still wait.
    "transcripts": sorted(
        ["old-exhausted", "old-open", "old-still-open", "recent-acked", "recent-closed"]
    ),
    "attempts": 12,
    "incidents": sorted(["inc-old-exhausted", "inc-old-still-open", "inc-recent-acked"]),
    "audit": ["audit-10", "audit-729"],  # 731 and 800 days are past the 730
    "webhooks": ["ev3", "ev4"],  # pending (still owed) and recent
    "rest": [3, 3, 3, 1],  # the kept incidents' log, messages, replies; recent-acked's finding
}


async def test_given_records_of_every_age_when_retention_runs_then_only_what_is_past_goes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions)
    report = await apply_retention(sessions, NOW, POLICY, chunk=2)  # several chunks per kind
    assert (report.transcripts, report.checkins, report.attempts) == (6, 2, 4)
    assert (report.incidents, report.audit, report.webhooks) == (1, 2, 3)
    assert await _state(sessions) == EXPECTED
    again = await apply_retention(sessions, NOW, POLICY)
    assert again.line() == (
        "erased 0 transcript(s); deleted 0 check-in(s) with 0 call attempt(s), 0 incident(s),"
        " 0 access log row(s), 0 webhook delivery(ies)"
    )


async def test_given_no_keep_set_when_retention_runs_then_nothing_goes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions)
    before = await _state(sessions)
    await apply_retention(sessions, NOW, RetentionPolicy(None, None, None, None))
    assert await _state(sessions) == before


async def test_given_the_cli_when_retention_runs_then_the_settings_apply(
    sessions: async_sessionmaker[AsyncSession], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(sessions)
    settings = Settings(
        database_url=db_url,
        retention={"transcripts_days": 90, "attempts_days": 365, "incidents_days": 1095},
    )
    args = build_parser().parse_args(["retention", "run"])
    assert await args.fn(settings, args) == 0
    assert capsys.readouterr().out.strip() == (
        "erased 6 transcript(s); deleted 2 check-in(s) with 4 call attempt(s), 1 incident(s),"
        " 2 access log row(s), 3 webhook delivery(ies)"
    )
    assert await _state(sessions) == EXPECTED


@pytest.mark.parametrize(
    ("kind", "days"),
    [("transcripts_days", 0), ("attempts_days", 6), ("incidents_days", 29), ("audit_days", 364)],
)
def test_given_too_short_a_keep_then_the_settings_refuse(kind: str, days: int) -> None:
    with pytest.raises(ValueError, match=kind):
        Settings(retention={kind: days})


async def test_given_the_scheduler_then_a_daily_record_retention_job_runs_beside_signals(
    db_url: str,
) -> None:
    container = build_container(Settings(database_url=db_url, retention={"time": "04:10"}))

    async def job() -> None:
        return None

    service = build_scheduler(
        container,
        object(),  # type: ignore[arg-type]  # no dispatcher: the jobs are only registered
        risk_retention=job,
        record_retention=job,
    )
    assert {"record-retention", "signal-retention"} <= set(service.job_ids)
    trigger = service.scheduler.get_job("record-retention").trigger
    assert str(trigger) == "cron[hour='4', minute='10']"
    await container.aclose()
