"""A person on the line, the escalation side: whom a resident who asks for help is connected
to, and everything the transfer did, in the incident's timeline.

The help incident is opened the moment the resident asks (not when the call ends): its
timeline then holds each official's leg as it happens, an accepted leg acknowledges it
(channel ``call``), and nobody accepting pages the chain by SMS right away. While the
transfer runs the incident's acknowledgement clock is set to ``budget``: if this process
dies mid-transfer, the escalation tick pages the chain when it runs out, so a crash never
swallows a resident's call for help. When the check-in closes later (outcome help), the
regular listener finds the incident already there and does nothing.

A resident whose number is on the do-not-call list is never connected: the chain is paged
as before.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_escalation import Incident
from anbu.db.models_scheduling import DoNotCall
from anbu.domain.checkin import Outcome
from anbu.domain.escalation import Urgency, alert_for
from anbu.domain.handoff import LEG_WORDS, LegResult, handoff_order, whisper_for
from anbu.domain.incidents import AckChannel, IncidentEventKind, IncidentStatus
from anbu.domain.phone import mask_phone
from anbu.ports import Clock, HandoffPlan, HandoffTarget, SystemClock
from escalation.outbox import log_event
from escalation.service import EscalationService, _chain_for, _free_code, _steps

log = logging.getLogger(__name__)


class HandoffDesk:
    """The :class:`anbu.ports.HelpDesk` on the database and the escalation service."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        escalation: EscalationService,
        *,
        budget: dt.timedelta,
        clock: Clock | None = None,
    ) -> None:
        self._sessions = sessions
        self._escalation = escalation
        self._budget = budget
        self._clock: Clock = clock or SystemClock()

    def _now(self) -> dt.datetime:
        return self._clock.now()

    async def begin(self, channel_id: str) -> HandoffPlan | None:
        now = self._now()
        tz = self._escalation.config.tz
        async with self._sessions() as session:
            attempt = await session.scalar(
                select(CallAttempt).where(CallAttempt.channel_id == channel_id)
            )
            if attempt is None:
                log.warning("handoff %s: no call attempt with this channel id", channel_id)
                return None
            checkin = await session.get(Checkin, attempt.checkin_id)
            assert checkin is not None  # a foreign key
            resident = checkin.resident
            incident = await self._open(session, checkin, now)
            if incident is None:
                return None  # already there: a second help in the same case is not re-run
            blocked = await session.get(DoNotCall, resident.phone)
            chain = await _chain_for(session, resident.district_id, resident.dong)
            steps = _steps(chain) if chain is not None else []
            order = handoff_order(steps, now, tz=tz, holidays=self._escalation.config.holidays)
            if blocked is not None or not order:
                why = "do-not-call: not connected" if blocked is not None else "nobody to call"
                await log_event(
                    session, incident.id, IncidentEventKind.NO_TRANSFER, now, detail=why
                )
                await session.commit()
                log.info("handoff %s: %s; paging by SMS", channel_id, why)
                # Today's page, at once (the chain as before help could be connected).
                await self._escalation.page_now(incident.id, now)
                return None
            assert chain is not None
            by_position = {s.position: s for s in chain.steps}
            targets = tuple(
                HandoffTarget(
                    official_id=by_position[s.position].official.id,
                    name=by_position[s.position].official.name,
                    phone=by_position[s.position].official.phone,
                    role=str(by_position[s.position].official.role),
                )
                for s in order
            )
            await session.commit()
            incident_id = incident.id
        return HandoffPlan(incident_id, whisper_for(resident.name, resident.dong), targets)

    async def _open(
        self, session: AsyncSession, checkin: Checkin, now: dt.datetime
    ) -> Incident | None:
        urgency = alert_for(Outcome.HELP) or Urgency.URGENT
        incident = Incident(
            checkin_id=checkin.id,
            resident_id=checkin.resident_id,
            district_id=checkin.resident.district_id,
            outcome=Outcome.HELP,
            urgency=urgency,
            status=IncidentStatus.OPEN,
            code=await _free_code(session),
            step_count=0,
            # The case is still open (the call goes on); the help was asked now.
            case_closed_at=now,
            opened_at=now,
            # Crash safety: the tick pages the chain if the transfer never reports back.
            ack_due_at=now + self._budget,
        )
        session.add(incident)
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()
            return None
        await log_event(
            session,
            incident.id,
            IncidentEventKind.OPENED,
            now,
            detail=f"{Outcome.HELP} ({urgency}); asked during the call: connecting an official",
        )
        return incident

    async def calling(self, incident_id: str, target: HandoffTarget) -> None:
        detail = f"{target.role} {mask_phone(target.phone)}"
        await self._log(incident_id, IncidentEventKind.CALLING, target, detail)

    async def leg_ended(
        self, incident_id: str, target: HandoffTarget, result: LegResult, rang: bool
    ) -> None:
        now = self._now()
        detail = f"{result}: {LEG_WORDS[result]}" + ("; rang" if rang else "")
        async with self._sessions() as session:
            if result is LegResult.ACCEPTED:
                incident = await session.get(Incident, incident_id)
                assert incident is not None
                await log_event(
                    session,
                    incident_id,
                    IncidentEventKind.CONNECTED,
                    now,
                    official_id=target.official_id,
                    detail=detail,
                )
                # An accepted connection is the acknowledgement: nobody is paged after it.
                await self._escalation.acknowledge_in(
                    session, incident, AckChannel.CALL, target.official_id, now, ""
                )
            else:
                await log_event(
                    session,
                    incident_id,
                    IncidentEventKind.CALL_ENDED,
                    now,
                    official_id=target.official_id,
                    detail=detail,
                )
            await session.commit()

    async def talked(self, incident_id: str, target: HandoffTarget, seconds: float) -> None:
        await self._log(incident_id, IncidentEventKind.TALKED, target, f"{seconds:.1f} s")

    async def _log(
        self, incident_id: str, kind: IncidentEventKind, target: HandoffTarget, detail: str
    ) -> None:
        """One line of the incident's log about ``target``'s leg, in a transaction of its own."""
        async with self._sessions() as session:
            await log_event(
                session,
                incident_id,
                kind,
                self._now(),
                official_id=target.official_id,
                detail=detail,
            )
            await session.commit()

    async def page(self, incident_id: str) -> None:
        await self._escalation.page_now(incident_id, self._now())


__all__ = ["HandoffDesk"]
