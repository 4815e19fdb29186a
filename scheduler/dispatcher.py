"""The dispatcher: claims due call attempts from the database and dials them, under a cap.

All state that matters is in the database (attempt status scheduled -> dialing -> finished);
the dispatcher only holds the in-flight tasks, so a crash loses nothing that cannot be
reconciled on restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, Resident
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus
from anbu.domain.phone import mask_phone
from anbu.domain.retry import RetryPolicy
from anbu.ports import CallRecord, CallRequest, Clock, Dialer
from anbu.services.checkins import CheckinListener, claim_attempt, notify, record_attempt

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dialer: Dialer,
        clock: Clock,
        *,
        policy: RetryPolicy | None = None,
        max_concurrent: int = 50,
        ring_timeout_s: float = 30.0,
        listeners: Sequence[CheckinListener] = (),
    ) -> None:
        self._sessions = sessions
        self._dialer = dialer
        self._clock = clock
        self.policy = policy or RetryPolicy()
        self._max = max_concurrent
        self._ring_timeout_s = ring_timeout_s
        self._listeners = list(listeners)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def add_listener(self, listener: CheckinListener) -> None:
        self._listeners.append(listener)

    def wake(self) -> None:
        """Ask for a dispatch pass now (a check-in was just opened)."""
        self._wake.set()

    async def dispatch_once(self) -> int:
        """Claim and start as many due attempts as there are free channels. Returns how many."""
        free = self._max - len(self._inflight)
        if free <= 0:
            return 0
        now = self._clock.now()
        started = 0
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CallAttempt.id, CallAttempt.channel_id, CallAttempt.number)
                    .join(Checkin, Checkin.id == CallAttempt.checkin_id)
                    .where(
                        CallAttempt.status == AttemptStatus.SCHEDULED,
                        CallAttempt.scheduled_for <= now,
                    )
                    .order_by(Checkin.priority.desc(), CallAttempt.scheduled_for)
                    .limit(free)
                )
            ).all()
            for attempt_id, channel_id, number in rows:
                if attempt_id in self._inflight:
                    continue
                if not await claim_attempt(session, attempt_id, now):
                    continue
                await session.commit()
                request = CallRequest(
                    channel_id=channel_id, number=number, ring_timeout_s=self._ring_timeout_s
                )
                task = asyncio.create_task(
                    self._run(attempt_id, request), name=f"call-{channel_id}"
                )
                self._inflight[attempt_id] = task
                task.add_done_callback(functools.partial(self._finished, attempt_id))
                started += 1
        return started

    def _finished(self, attempt_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(attempt_id, None)
        self._wake.set()  # a channel is free again

    async def _run(self, attempt_id: str, request: CallRequest) -> None:
        try:
            record = await self._dialer.call(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "call %s to %s failed in the dialer", request.channel_id, mask_phone(request.number)
            )
            now = self._clock.now()
            record = CallRecord(
                channel_id=request.channel_id,
                result=CallResult.FAILED,
                hangup_cause=None,
                originated_at=now,
                answered_at=None,
                ended_at=now,
            )
        async with self._sessions() as session:
            closed = await record_attempt(
                session, attempt_id, record, self.policy, self._clock.now()
            )
            await session.commit()
        log.info(
            "call %s to %s: %s reply=%s",
            request.channel_id,
            mask_phone(request.number),
            record.result,
            record.reply,
        )
        if closed is not None:
            await notify(self._listeners, closed)

    async def run(self, poll_interval_s: float = 1.0) -> None:
        """Dispatch forever: on every wake-up (new check-in, freed channel) or poll tick."""
        while True:
            try:
                await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch pass failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_interval_s)

    async def drain(self) -> None:
        """Wait for every in-flight call to finish (tests, graceful stop)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)


async def resident_for_attempt(session: AsyncSession, attempt_id: str) -> Resident | None:
    attempt = await session.get(CallAttempt, attempt_id)
    if attempt is None:
        return None
    checkin = await session.get(Checkin, attempt.checkin_id)
    return checkin.resident if checkin else None
