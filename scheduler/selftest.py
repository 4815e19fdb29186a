"""The daily self-test: one call to a known test line that answers and presses 1.

If it does not come back ``answered/ok`` something between us and the residents is broken
(Asterisk, the trunk, the AGI server, the prompts): an administrator must hear about it before
residents' check-ins silently go unanswered. Every run is stored in ``self_test_runs``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_scheduling import SelfTestRun
from anbu.domain.calls import CallResult
from anbu.domain.phone import mask_phone
from anbu.domain.replies import Reply
from anbu.ports import CallRecord, CallRequest, Clock

log = logging.getLogger(__name__)

SelfTestFailed = Callable[[SelfTestRun], Awaitable[None]]
DialFn = Callable[[CallRequest], Awaitable[CallRecord]]


async def run_self_test(
    sessions: async_sessionmaker[AsyncSession],
    dial: DialFn,
    clock: Clock,
    number: str,
    *,
    ring_timeout_s: float = 30.0,
    on_failure: SelfTestFailed | None = None,
) -> SelfTestRun:
    """Place the test call, store the run, call ``on_failure`` unless it came back OK."""
    run = SelfTestRun(started_at=clock.now())
    request = CallRequest(
        channel_id=f"selftest-{uuid.uuid4().hex}", number=number, ring_timeout_s=ring_timeout_s
    )
    try:
        record = await dial(request)
        run.result = str(record.result)
        run.ok = record.result is CallResult.ANSWERED and record.reply is Reply.OK
        run.detail = f"reply={record.reply} cause={record.hangup_cause} keys={record.keys!r}"
    except Exception as exc:
        log.exception("self-test call to %s failed in the dialer", mask_phone(number))
        run.result = "error"
        run.detail = repr(exc)[:500]
    run.ended_at = clock.now()
    async with sessions() as session:
        session.add(run)
        await session.commit()
    if run.ok:
        log.info("self-test call to %s ok", mask_phone(number))
    else:
        log.error("SELF-TEST FAILED: call to %s: %s %s", mask_phone(number), run.result, run.detail)
        if on_failure is not None:
            try:
                await on_failure(run)
            except Exception:
                log.exception("self-test failure hook failed")
    return run
