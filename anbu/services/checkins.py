"""Check-in use cases: open (or join) a case, record what an attempt got, read a case."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import CallAttempt, Checkin, Resident
from anbu.domain.checkin import (
    AttemptStatus,
    CheckinSource,
    CheckinStatus,
    Outcome,
    attempt_outcome,
)
from anbu.domain.retry import GiveUp, RetryAt, RetryPolicy, decide_retry
from anbu.errors import NotFoundError
from anbu.ports import CallRecord

log = logging.getLogger(__name__)

OPEN_STATUSES = (CheckinStatus.PENDING, CheckinStatus.DIALING)


@dataclass(frozen=True, slots=True)
class CheckinClosed:
    """Published when a case reaches its final status (escalation listens)."""

    checkin_id: str
    resident_id: str
    status: CheckinStatus
    outcome: Outcome
    at: dt.datetime


CheckinListener = Callable[[CheckinClosed], Awaitable[None]]


async def open_checkin(
    session: AsyncSession,
    resident: Resident,
    *,
    source: CheckinSource,
    reason: str,
    now: dt.datetime,
    priority: int = 0,
) -> tuple[Checkin, bool]:
    """Open a case for ``resident`` with its first attempt due now, or join the open one.

    Returns ``(checkin, created)``. Joining appends the new reason and raises the priority, so
    a second signal never makes a second call ring at the same time. The caller commits.
    """
    existing = (
        await session.execute(
            select(Checkin)
            .where(Checkin.resident_id == resident.id, Checkin.status.in_(OPEN_STATUSES))
            .order_by(Checkin.created_at)
            .limit(1)
        )
    ).scalar_one_or_none()
    if existing is not None:
        if reason and reason not in existing.reason:
            existing.reason = f"{existing.reason}\n{reason}"
        existing.priority = max(existing.priority, priority)
        existing.updated_at = now
        return existing, False
    checkin = Checkin(
        resident_id=resident.id,
        source=source,
        reason=reason,
        priority=priority,
        status=CheckinStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    checkin.attempts = [CallAttempt(attempt_no=1, number=resident.phone, scheduled_for=now)]
    session.add(checkin)
    await session.flush()
    return checkin, True


async def get_checkin(session: AsyncSession, checkin_id: str) -> Checkin:
    checkin = await session.get(Checkin, checkin_id)
    if checkin is None:
        raise NotFoundError("check-in", checkin_id)
    return checkin


async def claim_attempt(session: AsyncSession, attempt_id: str, now: dt.datetime) -> bool:
    """Move a scheduled attempt to dialing. Exactly one claimer wins (compare-and-set)."""
    res = await session.execute(
        update(CallAttempt)
        .where(CallAttempt.id == attempt_id, CallAttempt.status == AttemptStatus.SCHEDULED)
        .values(status=AttemptStatus.DIALING, originated_at=now)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await session.execute(
        update(Checkin)
        .where(
            Checkin.id
            == select(CallAttempt.checkin_id).where(CallAttempt.id == attempt_id).scalar_subquery()
        )
        .values(status=CheckinStatus.DIALING, updated_at=now)
    )
    return True


async def record_attempt(
    session: AsyncSession,
    attempt_id: str,
    record: CallRecord,
    policy: RetryPolicy,
    now: dt.datetime,
) -> CheckinClosed | None:
    """Store what an attempt got and move the case on: settle it or schedule the next attempt.

    Returns the closing event when the case reached a final status. The caller commits.
    """
    attempt = await session.get(CallAttempt, attempt_id, with_for_update=True)
    if attempt is None:
        raise NotFoundError("call attempt", attempt_id)
    if attempt.status is AttemptStatus.FINISHED:
        log.warning("attempt %s already finished; ignoring a second result", attempt.channel_id)
        return None
    attempt.status = AttemptStatus.FINISHED
    attempt.result = record.result
    attempt.reply = record.reply
    attempt.hangup_cause = record.hangup_cause
    attempt.keys = record.keys[:32]
    attempt.transcript = record.transcript
    attempt.confidence = record.confidence
    attempt.originated_at = record.originated_at
    attempt.answered_at = record.answered_at
    attempt.ended_at = record.ended_at
    checkin = await session.get(Checkin, attempt.checkin_id)
    assert checkin is not None  # FK
    return await _advance(session, checkin, attempt, policy, now)


async def _advance(
    session: AsyncSession,
    checkin: Checkin,
    attempt: CallAttempt,
    policy: RetryPolicy,
    now: dt.datetime,
) -> CheckinClosed | None:
    if checkin.status.is_final:
        return None
    assert attempt.result is not None
    outcome = attempt_outcome(attempt.result, attempt.reply)
    status = CheckinStatus.COMPLETED
    if outcome is None:
        dialed = len([a for a in checkin.attempts if a.status is not AttemptStatus.SCHEDULED])
        decision = decide_retry(policy, attempt.result, dialed, attempt.originated_at or now)
        if isinstance(decision, RetryAt):
            session.add(
                CallAttempt(
                    checkin_id=checkin.id,
                    attempt_no=attempt.attempt_no + 1,
                    number=attempt.number,
                    scheduled_for=max(decision.at, now),
                )
            )
            checkin.status = CheckinStatus.PENDING
            checkin.updated_at = now
            return None
        assert isinstance(decision, GiveUp)
        outcome = decision.outcome
        status = CheckinStatus.EXHAUSTED
    checkin.status = status
    checkin.outcome = outcome
    checkin.closed_at = now
    checkin.updated_at = now
    return CheckinClosed(checkin.id, checkin.resident_id, status, outcome, now)


async def notify(listeners: Sequence[CheckinListener], event: CheckinClosed) -> None:
    for listener in listeners:
        try:
            await listener(event)
        except Exception:
            # A listener's failure (e.g. the SMS outbox) must not undo the stored outcome;
            # escalation keeps its own durable state and sweeps for missed cases.
            log.exception("check-in %s listener failed", event.checkin_id)
