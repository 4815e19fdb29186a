"""Claiming due attempts and reconciling lost ones: the database side of the dispatcher.

A claim pass, in one transaction:
1. (PostgreSQL) take the claim-pass advisory lock, so the global cap is counted exactly;
2. count attempts ``dialing`` anywhere (every worker) against the global cap, less this
   worker's calls that have hung up and whose result is still being stored (their channel is
   free: it is refilled at once, not after the write; up to the worker's share of the cap,
   :func:`anbu.domain.pacing.refill_allowance`);
3. read due attempts, severe first, then oldest due -- on PostgreSQL ``FOR UPDATE SKIP
   LOCKED`` so no two workers can hold the same row; on SQLite a compare-and-set update;
4. per attempt apply the resident's calling hours: out of hours -> ``scheduled_for`` moves to
   the next allowed time; never callable (do-not-call, open hold) -> the case closes for an
   official; otherwise -> ``dialing`` with the claim recorded under this worker's life and
   the engine node the call goes out through (``call_attempts.node``: crash recovery asks
   that node about the channel).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import CallAttempt, Checkin, Resident
from anbu.db.models_scheduling import AttemptClaim
from anbu.domain.calling_hours import CallingWindow, blocked_reason, next_allowed
from anbu.domain.checkin import AttemptStatus
from anbu.domain.phone import mask_phone
from anbu.domain.retry import RetryPolicy
from anbu.services.checkins import (
    CheckinClosed,
    claim_attempts,
    close_undialable,
    lose_attempt,
)
from anbu.services.rules import ResidentRules, load_rules
from scheduler.workers import serialise_claims

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claimed:
    attempt_id: str
    channel_id: str
    number: str
    checkin_id: str
    resident_id: str
    priority: int
    trunk: str
    policy: RetryPolicy
    created_at: dt.datetime  # when the case was opened (latency measurements)
    node: str | None = None  # the engine node that dials it


@dataclass(slots=True)
class ClaimPass:
    claimed: list[Claimed] = field(default_factory=list)
    deferred: int = 0  # moved to the next allowed time
    closed: list[CheckinClosed] = field(default_factory=list)
    next_due: dt.datetime | None = None  # earliest scheduled attempt left, for the wait
    # The read window was full and capacity is left: run another pass at once.
    more: bool = False


async def claim_due(
    session: AsyncSession,
    *,
    worker_id: int,
    now: dt.datetime,
    global_cap: int,
    can_start: Callable[[str], str | None],
    limit: int,
    trunk_of: Callable[[str], str],
    severe_priority: int,
    default_policy: RetryPolicy,
    default_window: CallingWindow,
    hung_up: Collection[str] = (),
    refill_allowance: int | None = None,
) -> ClaimPass:
    """One claim pass (see the module doc). ``limit`` is what this process may start now
    (its own cap and rate); ``can_start(trunk)`` is asked before each claim and names the engine
    node that will dial it (None: no room now). ``hung_up``: this worker's attempts whose call
    is over but whose result is not stored yet; those still ``dialing`` in the table hold no
    channel, so the global cap does not count them, as long as this worker fills at most
    ``refill_allowance`` channels in all (its share left; None: no limit). Commits."""
    out = ClaimPass()
    postgres = session.get_bind().dialect.name == "postgresql"
    await serialise_claims(session)
    # The hung-up ones are counted by id in the same statement: one stored meanwhile is neither
    # counted as dialing nor taken off a second time.
    ended = case((CallAttempt.id.in_(list(hung_up)), 1), else_=0)
    dialing, ended_n = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(ended), 0)).where(
                CallAttempt.status == AttemptStatus.DIALING
            )
        )
    ).one()
    free_table = global_cap - dialing  # as every other worker sees it
    free_now = free_table + ended_n
    if refill_allowance is not None:
        # Past its share a worker takes only what the table frees, like the others.
        free_now = max(free_table, min(free_now, refill_allowance))
    free = min(limit, free_now)
    if free > 0:
        window = free * 2 + 8
        query = (
            select(
                CallAttempt.id,
                CallAttempt.channel_id,
                CallAttempt.number,
                Checkin.id,
                Checkin.resident_id,
                Checkin.priority,
                Checkin.created_at,
                Resident.phone,
            )
            .join(Checkin, Checkin.id == CallAttempt.checkin_id)
            .join(Resident, Resident.id == Checkin.resident_id)
            .where(
                CallAttempt.status == AttemptStatus.SCHEDULED,
                CallAttempt.scheduled_for <= now,
            )
            .order_by(Checkin.priority.desc(), CallAttempt.scheduled_for, CallAttempt.id)
            # Read a little more than we can start: some rows may be out of hours.
            .limit(window)
        )
        if postgres:
            query = query.with_for_update(of=CallAttempt, skip_locked=True)
        rows = (await session.execute(query)).all()
        rules = await load_rules(
            session,
            {(r[4], r[7]) for r in rows},
            now,
            default_policy=default_policy,
            default_window=default_window,
        )
        candidates: dict[str, Claimed] = {}
        for attempt_id, channel_id, number, checkin_id, resident_id, prio, created, _ in rows:
            rule: ResidentRules = rules[resident_id]
            severe = prio >= severe_priority
            blocked = blocked_reason(now, rule.window, severe=severe)
            if blocked is not None:
                log.info("check-in %s: %s; closing it for an official", checkin_id, blocked)
                closed = await close_undialable(session, checkin_id, str(blocked), now)
                if closed is not None:
                    out.closed.append(closed)
                continue
            at = next_allowed(now, rule.window, severe=severe)
            if at is None or at > now:
                if at is None:  # e.g. nothing within the horizon: treat as blocked
                    closed = await close_undialable(session, checkin_id, "no allowed time", now)
                    if closed is not None:
                        out.closed.append(closed)
                    continue
                await session.execute(
                    update(CallAttempt).where(CallAttempt.id == attempt_id).values(scheduled_for=at)
                )
                out.deferred += 1
                log.info("attempt %s: outside calling hours; moved to %s", channel_id, at)
                continue
            if len(candidates) >= free:
                continue  # keep reading: later rows may still need deferring
            trunk = trunk_of(number)
            node = can_start(trunk)
            if node is None:
                continue
            candidates[attempt_id] = Claimed(
                attempt_id=attempt_id,
                channel_id=channel_id,
                number=number,
                checkin_id=checkin_id,
                resident_id=resident_id,
                priority=prio,
                trunk=trunk,
                policy=rule.policy,
                created_at=created,
                node=node,
            )
        if candidates:
            # One compare-and-set for all: on PostgreSQL the rows are locked already; on SQLite
            # the status condition makes a row claimed elsewhere drop out of RETURNING.
            won = await claim_attempts(session, list(candidates), now)
            out.claimed = [c for aid, c in candidates.items() if aid in won]
            by_node: dict[str, list[str]] = {}
            for c in out.claimed:
                by_node.setdefault(c.node or "", []).append(c.attempt_id)
            for node_name, ids in by_node.items():
                await session.execute(
                    update(CallAttempt)
                    .where(CallAttempt.id.in_(ids))
                    .values(node=node_name or None)
                )
            if out.claimed:
                await session.execute(
                    insert(AttemptClaim),
                    [
                        {"attempt_id": c.attempt_id, "worker_id": worker_id, "claimed_at": now}
                        for c in out.claimed
                    ],
                )
            for c in out.claimed:
                log.debug("attempt %s to %s claimed", c.channel_id, mask_phone(c.number))
        out.more = (
            len(rows) == window
            and len(out.claimed) < free
            and bool(out.deferred or out.closed)  # not when a trunk cap held them back
        )
    out.next_due = (
        await session.execute(
            select(func.min(CallAttempt.scheduled_for)).where(
                CallAttempt.status == AttemptStatus.SCHEDULED
            )
        )
    ).scalar_one_or_none()
    await session.commit()
    return out


@dataclass(frozen=True, slots=True)
class Lost:
    attempt_id: str
    channel_id: str
    resident_id: str
    number: str
    originated_at: dt.datetime | None
    node: str | None = None  # the engine node that dialed it (None: before nodes existed)


async def orphaned_attempts(
    session: AsyncSession, *, live_workers: set[int], own_inflight: set[str]
) -> list[Lost]:
    """Attempts ``dialing`` that no live worker is dialing: their worker life died (or, for an
    attempt without a claim row, nobody recorded one)."""
    rows = (
        await session.execute(
            select(
                CallAttempt.id,
                CallAttempt.channel_id,
                Checkin.resident_id,
                CallAttempt.number,
                CallAttempt.originated_at,
                AttemptClaim.worker_id,
                CallAttempt.node,
            )
            .join(Checkin, Checkin.id == CallAttempt.checkin_id)
            .outerjoin(AttemptClaim, AttemptClaim.attempt_id == CallAttempt.id)
            .where(CallAttempt.status == AttemptStatus.DIALING)
        )
    ).all()
    return [
        Lost(aid, cid, rid, number, orig, node)
        for aid, cid, rid, number, orig, worker, node in rows
        if aid not in own_inflight and (worker is None or worker not in live_workers)
    ]


async def close_lost(
    session: AsyncSession,
    lost: Lost,
    *,
    now: dt.datetime,
    default_policy: RetryPolicy,
    default_window: CallingWindow,
) -> CheckinClosed | None:
    """Close one orphaned attempt as ``unknown`` under the resident's policy. Commits."""
    rules = await load_rules(
        session,
        [(lost.resident_id, lost.number)],
        now,
        default_policy=default_policy,
        default_window=default_window,
    )
    closed = await lose_attempt(session, lost.attempt_id, rules[lost.resident_id].policy, now)
    await session.commit()
    return closed
