"""Check-in use cases: open (or join) a case, record what an attempt got, read a case."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.base import table_of
from anbu.db.models import CallAttempt, Checkin, Resident, new_id
from anbu.domain.calls import CallResult
from anbu.domain.checkin import (
    AttemptStatus,
    CheckinSource,
    CheckinStatus,
    Outcome,
    attempt_outcome,
)
from anbu.domain.replies import Reply
from anbu.domain.retry import (
    Decision,
    GiveUp,
    RetryAt,
    RetryPolicy,
    decide_callback,
    decide_lost,
    decide_retry,
)
from anbu.errors import NotFoundError
from anbu.ports import CallRecord
from anbu.services import webhooks
from anbu.services.call_time import routine_retry_at

log = logging.getLogger(__name__)

OPEN_STATUSES = (CheckinStatus.PENDING, CheckinStatus.DIALING)


# A new case's columns (:func:`_new_case`), its id aside.
_new_case_columns = (
    "resident_id",
    "source",
    "reason",
    "priority",
    "status",
    "created_at",
    "updated_at",
)


def _open_case_of(what: Any) -> Select[Any]:
    return (
        select(what)
        .where(Checkin.resident_id == bindparam("resident_id"), Checkin.status.in_(OPEN_STATUSES))
        .order_by(Checkin.created_at)
        .limit(1)
    )


# Built once: a statement built per request costs more CPU than its round trip (SQLAlchemy's
# coercion of every clause and value, then its cache key); these are executed with parameters.
_OPEN_CASE = _open_case_of(Checkin)
_OPEN_CASE_ID = _open_case_of(Checkin.id)
# The resident's row, locked before "is a case open?" is asked: two transactions asking at once
# (the API and a rule, or two API calls) would otherwise both see none under PostgreSQL's READ
# COMMITTED and open two cases, and the person would be rung twice. The second waits for the
# first's commit and then joins its case. SQLite writes one transaction at a time already (no
# FOR UPDATE there).
_LOCK_RESIDENT = (
    select(Resident.id).where(Resident.id == bindparam("resident_id")).with_for_update()
)
_CASES = table_of(Checkin)
_CASE_COLUMNS = ("id", *_new_case_columns)
# The new case unless the resident has an open one: one round trip for the look-up and the
# INSERT (it returns the new id, or nothing).
_INSERT_CASE_UNLESS_OPEN = (
    insert(_CASES)
    .from_select(
        _CASE_COLUMNS,
        select(*(bindparam(c, type_=_CASES.c[c].type) for c in _CASE_COLUMNS)).where(
            ~exists(_open_case_of(Checkin.id))
        ),
    )
    .returning(_CASES.c.id)
)
_INSERT_ATTEMPT = insert(table_of(CallAttempt))


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
    await session.execute(_LOCK_RESIDENT, {"resident_id": resident.id})
    existing = (
        await session.execute(_OPEN_CASE, {"resident_id": resident.id})
    ).scalar_one_or_none()
    if existing is not None:
        _join(existing, reason, priority, now)
        return existing, False
    case, first = _new_case(resident.id, resident.phone, source, reason, priority, now)
    checkin = Checkin(**case)
    checkin.attempts = [CallAttempt(**first)]
    session.add(checkin)
    await session.flush()
    return checkin, True


def _new_case(
    resident_id: str,
    phone: str,
    source: CheckinSource,
    reason: str,
    priority: int,
    now: dt.datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The columns of a new case and of its first attempt, due now."""
    case = {
        "resident_id": resident_id,
        "source": source,
        "reason": reason,
        "priority": priority,
        "status": CheckinStatus.PENDING,
        "created_at": now,
        "updated_at": now,
    }
    return case, {"attempt_no": 1, "number": phone, "scheduled_for": now}


def _join(existing: Checkin, reason: str, priority: int, now: dt.datetime) -> None:
    if reason and reason not in existing.reason:
        existing.reason = f"{existing.reason}\n{reason}"
    existing.priority = max(existing.priority, priority)
    existing.updated_at = now


@dataclass(frozen=True, slots=True)
class CheckinRequested:
    id: str
    status: CheckinStatus
    created: bool


async def request_checkin(
    session: AsyncSession,
    resident_id: str,
    phone: str,
    *,
    source: CheckinSource,
    reason: str,
    now: dt.datetime,
    priority: int = 0,
    resident_locked: bool = False,
) -> CheckinRequested:
    """:func:`open_checkin` for a caller that needs the case's id only (the API, under load):
    the same case and first attempt written with two plain INSERTs instead of ORM objects and a
    unit-of-work flush (~1.5 ms of CPU less per request, bench/api.py), the first of them only
    if no case is open. Joining an open case is :func:`open_checkin`'s. ``resident_locked``:
    the caller read the resident's row ``FOR UPDATE`` in this transaction already (the API
    does), so it is not locked again. The caller commits."""
    case, first = _new_case(resident_id, phone, source, reason, priority, now)
    if not resident_locked:
        await session.execute(_LOCK_RESIDENT, {"resident_id": resident_id})
    while True:
        checkin_id = (
            await session.execute(_INSERT_CASE_UNLESS_OPEN, {"id": new_id(), **case})
        ).scalar_one_or_none()
        if checkin_id is not None:
            await session.execute(_INSERT_ATTEMPT, {"checkin_id": checkin_id, **first})
            return CheckinRequested(checkin_id, CheckinStatus.PENDING, True)
        found = (
            await session.execute(_OPEN_CASE_ID, {"resident_id": resident_id})
        ).scalar_one_or_none()
        existing = None if found is None else await session.get(Checkin, found)
        if existing is not None:  # else closed meanwhile: open a new one
            _join(existing, reason, priority, now)
            return CheckinRequested(existing.id, existing.status, False)


async def get_checkin(session: AsyncSession, checkin_id: str) -> Checkin:
    checkin = await session.get(Checkin, checkin_id)
    if checkin is None:
        raise NotFoundError("check-in", checkin_id)
    return checkin


async def claim_attempts(
    session: AsyncSession, attempt_ids: Collection[str], now: dt.datetime
) -> set[str]:
    """Move scheduled attempts to dialing, and their cases with them: the one claim transition
    (the dispatcher's claim pass and the tests use it). Compare-and-set on the status: an
    attempt claimed elsewhere meanwhile is not returned. The caller commits."""
    if not attempt_ids:
        return set()
    won = set(
        (
            await session.execute(
                update(CallAttempt)
                .where(
                    CallAttempt.id.in_(list(attempt_ids)),
                    CallAttempt.status == AttemptStatus.SCHEDULED,
                )
                .values(status=AttemptStatus.DIALING, originated_at=now)
                .returning(CallAttempt.id)
            )
        ).scalars()
    )
    if won:
        await session.execute(
            update(Checkin)
            .where(
                Checkin.id.in_(select(CallAttempt.checkin_id).where(CallAttempt.id.in_(list(won))))
            )
            .values(status=CheckinStatus.DIALING, updated_at=now)
        )
    return won


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
    if attempt.status in (AttemptStatus.FINISHED, AttemptStatus.UNKNOWN):
        # UNKNOWN: reconciliation already counted this attempt and moved the case on; a late
        # result must not move it a second time (that could add a second retry).
        log.warning(
            "attempt %s already %s; ignoring a late result %s",
            attempt.channel_id,
            attempt.status,
            record.result,
        )
        return None
    attempt.status = AttemptStatus.FINISHED
    attempt.result = record.result
    attempt.reply = record.reply
    attempt.hangup_cause = record.hangup_cause
    attempt.sip_status = record.sip_status
    attempt.keys = record.keys[:32]
    attempt.transcript = record.transcript
    attempt.confidence = record.confidence
    attempt.originated_at = record.originated_at
    attempt.answered_at = record.answered_at
    attempt.ended_at = record.ended_at
    return await _advance_case(session, attempt, policy, now)


async def lose_attempt(
    session: AsyncSession, attempt_id: str, policy: RetryPolicy, now: dt.datetime
) -> CheckinClosed | None:
    """Close an in-flight attempt whose result was lost (crash, Asterisk gone) as ``unknown``.

    The attempt counts toward the policy and the next dial waits a full interval from ``now``
    (see :func:`anbu.domain.retry.decide_lost`). Only a ``dialing`` attempt is touched, so a
    result recorded in the meantime wins. The caller commits.
    """
    attempt = await session.get(CallAttempt, attempt_id, with_for_update=True)
    if attempt is None:
        raise NotFoundError("call attempt", attempt_id)
    if attempt.status is not AttemptStatus.DIALING:
        return None
    attempt.status = AttemptStatus.UNKNOWN
    attempt.ended_at = now
    return await _advance_case(session, attempt, policy, now)


async def close_undialable(
    session: AsyncSession, checkin_id: str, why: str, now: dt.datetime
) -> CheckinClosed | None:
    """Settle an open case that must not be dialed (do-not-call, open-ended hold) without a
    call: its scheduled attempt is dropped and an official follows up (``declined``)."""
    # Lock the row alone: FOR UPDATE cannot cover the eager (outer-joined) resident.
    await session.execute(select(Checkin.id).where(Checkin.id == checkin_id).with_for_update())
    checkin = await session.get(Checkin, checkin_id)
    if checkin is None:
        raise NotFoundError("check-in", checkin_id)
    if checkin.status.is_final:
        return None
    await session.execute(
        delete(CallAttempt).where(
            CallAttempt.checkin_id == checkin_id, CallAttempt.status == AttemptStatus.SCHEDULED
        )
    )
    checkin.reason = f"{checkin.reason}\nnot dialed: {why}"
    checkin.status = CheckinStatus.CANCELLED
    checkin.outcome = Outcome.DECLINED
    checkin.closed_at = now
    checkin.updated_at = now
    await webhooks.checkin_closed(session, checkin, now)
    return CheckinClosed(checkin.id, checkin.resident_id, checkin.status, Outcome.DECLINED, now)


async def phone_unreachable_attempts(
    session: AsyncSession, resident_id: str, since: dt.datetime
) -> int:
    """How many attempts to ``resident_id`` dialled since ``since`` the network answered
    "phone off / out of coverage" (480, causes 18/19/20 without ringing): the stored "phone
    unreachable" observation. A phone that stays off for days is a crisis signal the risk
    rules can read from here."""
    count = await session.scalar(
        select(func.count())
        .select_from(CallAttempt)
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(
            Checkin.resident_id == resident_id,
            CallAttempt.result == CallResult.UNREACHABLE,
            CallAttempt.originated_at >= since,
        )
    )
    return int(count or 0)


def _counts(checkin: Checkin, current: CallAttempt) -> tuple[int, int]:
    """(unanswered dials including ``current``, callback requests before ``current``)."""
    unanswered = 0
    callbacks = 0
    for a in checkin.attempts:
        if a.status not in (AttemptStatus.FINISHED, AttemptStatus.UNKNOWN):
            continue
        if a.result is not CallResult.ANSWERED:
            unanswered += 1
        elif a.reply is Reply.CALLBACK and a.id != current.id:
            callbacks += 1
    return unanswered, callbacks


async def _advance_case(
    session: AsyncSession, attempt: CallAttempt, policy: RetryPolicy, now: dt.datetime
) -> CheckinClosed | None:
    """:func:`_advance` the case ``attempt`` belongs to, now that the attempt is settled."""
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
    unanswered, callbacks = _counts(checkin, attempt)
    decision: Decision
    if attempt.status is AttemptStatus.UNKNOWN:
        decision = decide_lost(policy, unanswered, now)
    else:
        assert attempt.result is not None
        outcome = attempt_outcome(attempt.result, attempt.reply)
        if outcome is Outcome.CALLBACK:
            decision = decide_callback(policy, callbacks, attempt.answered_at or now)
        elif outcome is not None:
            decision = GiveUp(outcome)
        else:
            decision = decide_retry(
                policy, attempt.result, unanswered, attempt.originated_at or now
            )
    if isinstance(decision, RetryAt):
        at = max(decision.at, now)
        if checkin.source is CheckinSource.ROUTINE:  # at the hour they usually answer
            at = await routine_retry_at(session, checkin.resident_id, attempt.number, at, now)
        session.add(
            CallAttempt(
                checkin_id=checkin.id,
                attempt_no=attempt.attempt_no + 1,
                number=attempt.number,
                scheduled_for=at,
            )
        )
        checkin.status = CheckinStatus.PENDING
        checkin.updated_at = now
        return None
    # Answered (with any reply, including a callback past its budget) completes the case;
    # a give-up without an answer exhausts it.
    answered = attempt.result is CallResult.ANSWERED
    status = CheckinStatus.COMPLETED if answered else CheckinStatus.EXHAUSTED
    checkin.status = status
    checkin.outcome = decision.outcome
    checkin.closed_at = now
    checkin.updated_at = now
    await webhooks.checkin_closed(session, checkin, now)
    return CheckinClosed(checkin.id, checkin.resident_id, status, decision.outcome, now)


async def notify(listeners: Sequence[CheckinListener], event: CheckinClosed) -> None:
    for listener in listeners:
        try:
            await listener(event)
        except Exception:
            # A listener's failure (e.g. the SMS outbox) must not undo the stored outcome;
            # escalation keeps its own durable state and sweeps for missed cases.
            log.exception("check-in %s listener failed", event.checkin_id)
