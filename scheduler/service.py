"""The scheduler service: one APScheduler 3.x ``AsyncIOScheduler`` driving the periodic work,
plus the dispatcher loop it keeps awake.

Jobs (all state lives in the database; the scheduler only triggers, so its jobs sit in the
in-memory job store and are rebuilt from code at every start):

- ``dispatch``: wakes the dispatcher every ``poll_interval_s`` (it also wakes on its own when
  a check-in is opened, a channel frees up or the next attempt falls due);
- ``risk-sweep``: the risk engine's sweep (a callable the composition root passes in);
- ``signal-retention``: deletes raw signal events past the retention (daily, idem);
- ``record-retention``: erases and deletes personal records past their keep, per kind
  (transcripts, closed check-ins and attempts, acknowledged incidents, the access log:
  ``anbu.services.retention``; daily at ``retention.time``);
- ``escalation``: the escalation timers' tick (idem);
- ``routine``: opens the routine check-ins that have come due;
- ``self-test``: the daily test call at ``self_test_time`` local time.

Run the periodic jobs in ONE process per database (APScheduler 3 has no shared job store
locking); extra dispatch-only workers (``python -m scheduler.worker``) may run beside it on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.container import Container
from anbu.db.outage import report_failure
from anbu.domain.calling_hours import zone
from anbu.domain.phone import normalize_phone
from scheduler.dispatcher import Dispatcher
from scheduler.routine import open_due_routine_checkins
from scheduler.selftest import SelfTestFailed, run_self_test

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[object]]


class SchedulerService:
    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        dispatcher: Dispatcher,
        *,
        poll_interval_s: float,
    ) -> None:
        self.scheduler = scheduler
        self.dispatcher = dispatcher
        self._poll_interval_s = poll_interval_s
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self.scheduler.get_jobs())

    async def start(self) -> None:
        """Register the worker, reconcile calls a crash left behind, then run."""
        await self.dispatcher.start()
        self._loop_task = asyncio.create_task(
            self.dispatcher.run(self._poll_interval_s), name="dispatcher"
        )
        self.scheduler.start()

    async def stop(self, *, drain: bool = False) -> None:
        """Stop triggering; with ``drain`` let calls in flight finish, else cancel them (their
        attempts are reconciled at the next start)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if drain:
            await self.dispatcher.drain()
        await self.dispatcher.close()


def _guard(
    name: str, fn: Hook, sessions: async_sessionmaker[AsyncSession]
) -> Callable[[], Awaitable[None]]:
    """A job that never raises into APScheduler: it runs again at its next tick (a database
    outage is one log line for all jobs, not a traceback per run)."""

    async def job() -> None:
        try:
            await fn()
        except Exception as error:
            report_failure(log, sessions, f"scheduled job {name}", error)

    job.__name__ = f"job_{name.replace('-', '_')}"
    return job


def _hhmm(text: str) -> tuple[int, int]:
    hour, _, minute = text.partition(":")
    return int(hour), int(minute or 0)


def build_scheduler(
    container: Container,
    dispatcher: Dispatcher,
    *,
    risk_sweep: Hook | None = None,
    risk_retention: Hook | None = None,
    record_retention: Hook | None = None,
    escalation_tick: Hook | None = None,
    on_self_test_failed: SelfTestFailed | None = None,
) -> SchedulerService:
    """The periodic jobs around ``dispatcher`` (built by the composition root, :mod:`anbu.app`).
    Call ``await service.start()`` inside the running loop and ``await service.stop()`` at
    shutdown."""
    cfg = container.settings
    sc = cfg.scheduling
    clk = container.clock
    tz = zone(sc.timezone)
    scheduler = AsyncIOScheduler(timezone=tz)
    common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}

    def add(job_id: str, hook: Hook, trigger: BaseTrigger, **extra: Any) -> None:
        scheduler.add_job(
            _guard(job_id, hook, container.sessions), trigger, id=job_id, **extra, **common
        )

    def every(seconds: float) -> IntervalTrigger:
        return IntervalTrigger(seconds=seconds, timezone=tz)

    def daily(hhmm: str) -> CronTrigger:
        hour, minute = _hhmm(hhmm)
        return CronTrigger(hour=hour, minute=minute, timezone=tz)

    async def wake() -> None:
        dispatcher.wake()

    add("dispatch", wake, every(sc.poll_interval_s), name="dispatch")
    if risk_sweep is not None:
        add("risk-sweep", risk_sweep, every(sc.risk_sweep_interval_s))
    if risk_retention is not None:
        add("signal-retention", risk_retention, daily(sc.signal_retention_time))
    if record_retention is not None:
        add("record-retention", record_retention, daily(cfg.retention.time))
    if escalation_tick is not None:
        add("escalation", escalation_tick, every(sc.escalation_interval_s))

    async def routine() -> None:
        async with container.sessions() as session:
            opened = await open_due_routine_checkins(session, clk.now())
        if opened:
            log.info("routine check-ins opened: %d", len(opened))
            dispatcher.wake()

    add("routine", routine, every(sc.routine_interval_s), name="routine")
    if sc.self_test_number:
        number = normalize_phone(sc.self_test_number)
        at = daily(sc.self_test_time)

        async def self_test() -> None:
            await run_self_test(
                container.sessions,
                dispatcher.dial_direct,
                clk,
                number,
                ring_timeout_s=cfg.trunk.ring_timeout_s,
                on_failure=on_self_test_failed,
            )

        add("self-test", self_test, at)
    return SchedulerService(scheduler, dispatcher, poll_interval_s=sc.poll_interval_s)
