"""Administrators' pages through the SMS outbox (see :mod:`anbu.domain.ops` for why).

Stored in the same durable outbox as the officials' alerts, so a page survives a crash and
goes out through the provider fallback; it has no incident and no acknowledgement clock.
Built by the composition root from ``escalation.admin_phones``; with none configured the
ERROR log lines are the only page (the root says so at start).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_scheduling import SelfTestRun
from anbu.domain.node_health import FAULT_KOREAN, NodeFault
from anbu.domain.ops import OpsEvent, PageThrottle, ops_page
from anbu.ports import Clock
from escalation.outbox import enqueue

log = logging.getLogger(__name__)


class AdminPager:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        phones: Sequence[str],
        sender: str,
        clock: Clock,
        *,
        tz: dt.tzinfo,
        interval: dt.timedelta,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._phones = tuple(phones)
        self._sender = sender
        self._clock = clock
        self._tz = tz
        self._throttle = PageThrottle(interval)
        self._wake = wake

    async def page(self, event: OpsEvent, subject: str, detail: str) -> int:
        """Queue the page to every administrator; returns how many SMS were stored (0 when the
        same page went out within the interval, or nobody is configured)."""
        now = self._clock.now()
        if not self._phones or not self._throttle.allow(event, subject, now):
            return 0
        sms = ops_page(event, subject, detail, now.astimezone(self._tz))
        stamp = now.strftime("%Y%m%d%H%M%S")
        async with self._sessions() as session:
            for phone in self._phones:
                enqueue(
                    session,
                    reference=f"ops.{event}.{stamp}.{uuid.uuid4().hex[:12]}",
                    to=phone,
                    sender=self._sender,
                    text=sms.text,
                    kind=sms.kind,
                    subject=sms.subject,
                    now=now,
                    priority=2,  # every resident's calls are at stake: first, with urgent alerts
                )
            await session.commit()
        log.warning("paged %d administrator(s): %s %s", len(self._phones), event, subject)
        if self._wake is not None:
            self._wake()
        return len(self._phones)

    async def node_down(self, name: str, cause: NodeFault = NodeFault.AMI_LOST) -> None:
        await self.page(
            OpsEvent.NODE_DOWN,
            name,
            f"{FAULT_KOREAN[cause]}. 새 전화는 다른 서버로 갑니다. 확인 바랍니다.",
        )

    async def network_failure(self, residents: int) -> None:
        await self.page(
            OpsEvent.NETWORK_FAILURE,
            "trunk",
            f"주민 {residents}명에게 건 전화가 통신망 응답 없이 끝났습니다. 트렁크를 확인하세요.",
        )

    async def self_test_failed(self, run: SelfTestRun) -> None:
        await self.page(
            OpsEvent.SELF_TEST_FAILED, "daily", f"결과: {run.result or '알 수 없음'}. {run.detail}"
        )
