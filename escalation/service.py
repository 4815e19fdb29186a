"""Escalation use cases: open an incident when a case closes, move it along its chain on a
clock, take acknowledgements (reply SMS or link) and findings, send the device digest.

Everything durable is in the database: the incident, its timed log, and the SMS rows in the
outbox (stored in the same transaction that decides to send them). The outbox worker sends;
this module only decides and stores, so a crash anywhere loses nothing:

- the listener (:meth:`EscalationService.on_checkin_closed`) opens the incident right after a
  case closes; if that call is lost (crash between the case's commit and the listener), the
  sweep in :meth:`EscalationService.escalate_due` opens it a few seconds later;
- ``escalate_due`` is idempotent and safe to run from several processes: each incident moves
  by compare-and-set on its ``ack_due_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident, new_id
from anbu.db.models_escalation import (
    AckLink,
    EscalationChain,
    FindingAmendment,
    InboundSms,
    Incident,
    IncidentEvent,
    Official,
    OutboxMessage,
    ResidentFinding,
)
from anbu.db.session import transaction_cache
from anbu.domain.calling_hours import zone
from anbu.domain.checkin import Outcome
from anbu.domain.escalation import (
    ACK_CHANNEL_WORDS,
    CODE_DIGITS,
    FINDING_LABELS,
    OUTCOME_WORDS,
    REPLY_MAX_FAILURES,
    ROLE_WORDS,
    SEOUL,
    URGENCY_WORDS,
    AlertFacts,
    AttemptFacts,
    DutyHours,
    Finding,
    Step,
    Urgency,
    alert_for,
    digest_line,
    korean_holiday,
    mask_name,
    next_step,
    parse_reply,
    render_alert,
    render_digest,
)
from anbu.domain.incidents import AckChannel, IncidentEventKind, IncidentStatus
from anbu.domain.phone import mask_phone
from anbu.errors import ConflictError, GoneError, NotFoundError
from anbu.ports import Clock, SystemClock
from anbu.risk.feedback import on_finding
from anbu.services import webhooks
from anbu.services.checkins import CheckinClosed
from anbu.settings import Settings
from escalation import dlr
from escalation.outbox import (
    GROUP_LINGER_S,
    DeliveryOutcome,
    GroupCommit,
    OutboxWorker,
    cancel_pending,
    enqueue,
    execute_core,
    log_event,
    outbox_values,
    record_deliveries,
)

log = logging.getLogger(__name__)

ALERT_OUTCOMES = tuple(o for o in Outcome if alert_for(o) is not None)
PRIORITY = {Urgency.URGENT: 2, Urgency.NORMAL: 1}
DIGEST_PRIORITY = 0


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    public_url: str
    sender: str
    tz: dt.tzinfo = SEOUL
    holidays: Callable[[dt.date], bool] = korean_holiday
    sweep_lookback: dt.timedelta = dt.timedelta(hours=48)
    sweep_grace: dt.timedelta = dt.timedelta(seconds=10)
    no_chain_retry: dt.timedelta = dt.timedelta(seconds=60)
    reply_max_failures: int = REPLY_MAX_FAILURES
    reply_lockout_window: dt.timedelta = dt.timedelta(hours=1)
    ack_link_ttl: dt.timedelta = dt.timedelta(hours=72)

    @classmethod
    def from_settings(cls, settings: Settings) -> EscalationConfig:
        esc = settings.escalation
        return cls(
            public_url=settings.public_url.rstrip("/"),
            sender=settings.sms.sender,
            tz=zone(settings.scheduling.timezone),
            sweep_lookback=dt.timedelta(hours=esc.sweep_lookback_h),
            sweep_grace=dt.timedelta(seconds=esc.sweep_grace_s),
            no_chain_retry=dt.timedelta(seconds=esc.no_chain_retry_s),
            reply_max_failures=esc.reply_max_failures,
            reply_lockout_window=dt.timedelta(seconds=esc.reply_lockout_window_s),
            ack_link_ttl=dt.timedelta(hours=esc.ack_link_ttl_h),
        )

    def link(self, token: str) -> str:
        return f"{self.public_url}/ack/{token}"


def hash_token(token: str) -> str:
    """What ``ack_links`` stores for a link's token (SHA-256, hex): the token has 128 random
    bits, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def duty_of(days: str, start_min: int, end_min: int, on_holidays: bool) -> DutyHours:
    return DutyHours(
        frozenset(int(d) for d in days),
        dt.time(start_min // 60, start_min % 60),
        dt.time(end_min // 60 % 24, end_min % 60),
        on_holidays,
    )


class ReplyOutcome(enum.StrEnum):
    ACKNOWLEDGED = "acknowledged"
    ALREADY = "already_acknowledged"
    DUPLICATE = "duplicate"  # the same SMS again (Kannel retried its callback)
    NO_CODE = "no_code"  # not "<code>" or "<code> <word>": counts as a wrong try
    NO_MATCH = "no_match"  # nothing waits on a reply from this number
    WRONG_CODE = "wrong_code"  # this number has a waiting incident, but not with this code
    LOCKED = "locked"  # too many wrong tries (this number, or every incident it could ack)


REPLY_WORDS: dict[ReplyOutcome, str] = {
    ReplyOutcome.ACKNOWLEDGED: "확인",
    ReplyOutcome.ALREADY: "이미 확인됨",
    ReplyOutcome.DUPLICATE: "같은 문자 다시 받음",
    ReplyOutcome.NO_CODE: "확인 코드 없음",
    ReplyOutcome.NO_MATCH: "기다리는 건 없음",
    ReplyOutcome.WRONG_CODE: "틀린 코드",
    ReplyOutcome.LOCKED: "잠김 (틀린 코드가 너무 많음)",
}

# Outcomes that spend a try of the number's budget.
FAILED_TRIES = (ReplyOutcome.NO_CODE, ReplyOutcome.WRONG_CODE, ReplyOutcome.LOCKED)


@dataclass(frozen=True, slots=True)
class ReplyResult:
    outcome: ReplyOutcome
    incident_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentView:
    """What the ack page shows (no full name, no number)."""

    incident: Incident
    resident_masked: str
    dong: str
    events: list[tuple[dt.datetime, IncidentEventKind, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _AlertCase:
    """What an alert says about the case (from the ORM, or from one batch query)."""

    outcome: Outcome
    urgency: Urgency
    case_closed_at: dt.datetime
    code: str
    resident_name: str
    dong: str
    district_name: str
    reason: str
    attempts: tuple[AttemptFacts, ...]


@dataclass(frozen=True, slots=True)
class _Alert:
    link: dict[str, Any]  # ack_links columns
    message: dict[str, Any]  # sms_outbox columns
    queued_detail: str


async def _chain_for(session: AsyncSession, district_id: int, dong: str) -> EscalationChain | None:
    """The dong's own chain, else the district's default chain (dong ""). Kept for the
    transaction: a batch of openings (:meth:`EscalationService.open_incident`) asks once per
    dong."""
    cache: dict[tuple[int, str], EscalationChain | None] = transaction_cache(session, "chains")
    if (district_id, dong) in cache:
        return cache[district_id, dong]
    rows = (
        await session.execute(
            select(EscalationChain).where(
                EscalationChain.district_id == district_id,
                EscalationChain.dong.in_((dong, "")),
            )
        )
    ).scalars()
    chains = {c.dong: c for c in rows}
    found = cache[district_id, dong] = chains.get(dong) or chains.get("")
    return found


def _steps(chain: EscalationChain) -> list[Step]:
    return [
        Step(
            s.position,
            s.official_id,
            s.ack_timeout_s,
            duty_of(s.duty_days, s.duty_start_min, s.duty_end_min, s.duty_on_holidays),
        )
        for s in chain.steps
        if s.official.active
    ]


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


async def _free_code(session: AsyncSession) -> str:
    """A reply code no open incident uses (so a reply names one incident)."""
    for _ in range(50):
        code = _new_code()
        taken = await session.scalar(
            select(Incident.id)
            .where(Incident.code == code, Incident.status != IncidentStatus.ACKNOWLEDGED)
            .limit(1)
        )
        if taken is None:
            return code
    # Almost all codes taken: a reply still matches by sender too.
    return _new_code()


def _event(
    incident_id: str,
    kind: IncidentEventKind,
    at: dt.datetime,
    *,
    message_id: str | None = None,
    official_id: str | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """One incident_events row, for a batch insert (no webhook: see _open_many)."""
    return {
        "incident_id": incident_id,
        "kind": kind,
        "at": at,
        "message_id": message_id,
        "official_id": official_id,
        "detail": detail,
    }


async def _free_codes(session: AsyncSession, n: int) -> list[str]:
    """``n`` distinct reply codes no open incident uses, asked in one statement a round."""
    chosen: list[str] = []
    for _ in range(50):
        fresh = list({_new_code() for _ in range(n - len(chosen))} - set(chosen))
        if not fresh:
            break
        taken = set(
            (
                await execute_core(
                    session,
                    select(Incident.code).where(
                        Incident.code.in_(fresh), Incident.status != IncidentStatus.ACKNOWLEDGED
                    ),
                )
            ).scalars()
        )
        chosen += [c for c in fresh if c not in taken]
    # Almost all codes taken: a reply still matches by sender too.
    chosen += [_new_code() for _ in range(n - len(chosen))]
    return chosen


class EscalationService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: EscalationConfig,
        *,
        clock: Clock | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self.config = config
        self._clock = clock or SystemClock()
        self._wake = wake or (lambda: None)
        # Delivery reports come two per alert, many at once in a burst: one transaction for
        # all that wait, each answered after the commit (escalation.outbox.GroupCommit).
        self._reports: GroupCommit[tuple[dlr.DeliveryReport, dt.datetime], DeliveryOutcome] = (
            GroupCommit(
                sessions,
                None,
                "delivery-reports",
                order=lambda r: r[0].reference,
                batch_work=record_deliveries,
                linger_s=GROUP_LINGER_S,
            )
        )
        self._openings: GroupCommit[tuple[str, dt.datetime], str | None] = GroupCommit(
            sessions,
            None,
            "incident-openings",
            order=lambda item: item[0],
            batch_work=self._open_many,
        )

    def wake(self) -> None:
        """Wake the outbox worker (an SMS was just queued, or is due now)."""
        self._wake()

    # --- opening ------------------------------------------------------------------------------

    async def on_checkin_closed(self, event: CheckinClosed) -> None:
        """The :data:`anbu.services.checkins.CheckinListener`: alert at once if needed."""
        if alert_for(event.outcome) is None:
            return
        await self.open_incident(event.checkin_id, self._clock.now())

    async def open_incident(self, checkin_id: str, now: dt.datetime) -> str | None:
        """Open the incident of a closed case and queue its first SMS. Idempotent: returns
        None when the case needs no alert or already has an incident.

        Openings that wait together share one transaction (:class:`GroupCommit`): in a burst
        (many calls ending together) a session, a commit and the chain and webhook look-ups
        per incident were most of the time to the first SMS (bench/escalation.py, cProfile:
        13 statements and one commit per incident, ~7 ms CPU each). Each caller still returns
        only after its incident is committed."""
        try:
            incident_id = await self._openings.submit((checkin_id, now))
        except IntegrityError:
            # The sweep and the listener raced for the same case: the other one won.
            return None
        if incident_id is not None:
            log.info("incident %s opened for check-in %s", incident_id, checkin_id)
            self._wake()
        return incident_id

    async def _open_many(
        self, session: AsyncSession, items: list[tuple[str, dt.datetime]]
    ) -> list[str | None]:
        """A batch of openings in one transaction, set-based: one query each for the cases,
        their attempts, the incidents they already have and the reply codes, then one insert
        per table (incidents, their log, links, SMS) for the whole batch.

        Why: one opening at a time through the ORM was 13 statements (a flush, lazy loads,
        a code query, row by row inserts) per incident, and in the 1,000-alert burst the
        openings alone held this process for most of the burst (bench/escalation.py,
        ``burst_stored_s`` 30-38 s of 1,000 alerts at load 6). With a webhook subscriber the
        integrator's events read each incident as it stood at each step, so that case keeps
        the one-at-a-time path (:meth:`_open_in`)."""
        if await webhooks.any_subscriber(session):
            return [await self._open_in(session, item) for item in items]
        ids = list(dict.fromkeys(checkin_id for checkin_id, _ in items))
        cases: dict[str, Any] = {
            row[0]: row
            for row in await execute_core(
                session,
                select(
                    Checkin.id,
                    Checkin.status,
                    Checkin.outcome,
                    Checkin.closed_at,
                    Checkin.reason,
                    Resident.id,
                    Resident.district_id,
                    Resident.dong,
                    Resident.name,
                    District.name,
                )
                .join(Resident, Resident.id == Checkin.resident_id)
                .join(District, District.id == Resident.district_id)
                .where(Checkin.id.in_(ids)),
            )
        }
        for checkin_id in ids:
            if checkin_id not in cases:
                raise NotFoundError("check-in", checkin_id)
        has_incident = set(
            (
                await execute_core(
                    session, select(Incident.checkin_id).where(Incident.checkin_id.in_(ids))
                )
            ).scalars()
        )
        todo: list[tuple[int, Any, Urgency, dt.datetime]] = []
        out: list[str | None] = [None] * len(items)
        for i, (checkin_id, now) in enumerate(items):
            case = cases[checkin_id]
            status, outcome = case[1], case[2]
            urgency = alert_for(outcome) if outcome is not None and status.is_final else None
            # An incident already there, or twice in this batch: the other one won (as the
            # unique checkin_id would say).
            if urgency is None or checkin_id in has_incident:
                continue
            has_incident.add(checkin_id)
            todo.append((i, case, urgency, now))
        if not todo:
            return out
        attempts: dict[str, list[AttemptFacts]] = {}
        attempt_rows: Any = await execute_core(
            session,
            select(
                CallAttempt.checkin_id,
                CallAttempt.attempt_no,
                CallAttempt.status,
                CallAttempt.result,
                CallAttempt.reply,
                CallAttempt.originated_at,
                CallAttempt.scheduled_for,
            )
            .where(CallAttempt.checkin_id.in_([case[0] for _, case, _, _ in todo]))
            .order_by(CallAttempt.checkin_id, CallAttempt.attempt_no),
        )
        for cid, number, status, result, reply, originated_at, scheduled_for in attempt_rows:
            attempts.setdefault(cid, []).append(
                AttemptFacts(number, status, result, reply, originated_at or scheduled_for)
            )
        codes = await _free_codes(session, len(todo))
        incidents: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for (i, case, urgency, now), code in zip(todo, codes, strict=True):
            checkin_id, _status, outcome, closed_at, reason = case[:5]
            resident_id, district_id, dong, resident_name, district_name = case[5:]
            incident_id = new_id()
            out[i] = incident_id
            row: dict[str, Any] = {
                "id": incident_id,
                "checkin_id": checkin_id,
                "resident_id": resident_id,
                "district_id": district_id,
                "outcome": outcome,
                "urgency": urgency,
                "status": IncidentStatus.OPEN,
                "code": code,
                "step_position": None,
                "step_count": 0,
                "current_message_id": None,
                "ack_due_at": None,
                "case_closed_at": closed_at or now,
                "opened_at": now,
            }
            incidents.append(row)
            events.append(
                _event(
                    incident_id,
                    IncidentEventKind.OPENED,
                    now,
                    detail=f"{OUTCOME_WORDS.get(outcome, str(outcome))} "
                    f"({URGENCY_WORDS[urgency]}) · 안부 확인 종료 "
                    f"{(closed_at or now).astimezone(self.config.tz):%Y-%m-%d %H:%M:%S}",
                )
            )
            chain = await _chain_for(session, district_id, dong)
            steps = _steps(chain) if chain is not None else []
            step = (
                next_step(steps, None, now, tz=self.config.tz, holidays=self.config.holidays)
                if steps
                else None
            )
            if step is None:
                # As _tell_next: nobody to tell yet, keep it open and retry routing.
                log.error(
                    "incident %s: no escalation chain for district %s dong %r",
                    incident_id,
                    district_id,
                    dong,
                )
                row["ack_due_at"] = now + self.config.no_chain_retry
                events.append(
                    _event(
                        incident_id,
                        IncidentEventKind.NO_CHAIN,
                        now,
                        detail=f"'{dong or '행정동 미기재'}'에 연락 체계가 없습니다",
                    )
                )
                continue
            assert chain is not None  # a step came from it
            official = next(s for s in chain.steps if s.position == step.position).official
            alert = self._alert(
                incident_id=incident_id,
                step_number=1,
                facts=_AlertCase(
                    outcome=outcome,
                    urgency=urgency,
                    case_closed_at=closed_at or now,
                    code=code,
                    resident_name=resident_name,
                    dong=dong,
                    district_name=district_name,
                    reason=reason,
                    attempts=tuple(attempts.get(checkin_id, ())),
                ),
                official=official,
                step=step,
                now=now,
            )
            row.update(
                step_position=step.position, step_count=1, current_message_id=alert.message["id"]
            )
            links.append(alert.link)
            messages.append(alert.message)
            events.append(
                _event(
                    incident_id,
                    IncidentEventKind.QUEUED,
                    now,
                    message_id=alert.message["id"],
                    official_id=official.id,
                    detail=alert.queued_detail,
                )
            )
        # An IntegrityError (the sweep opened one of these meanwhile) fails the batch;
        # GroupCommit then retries each item alone and open_incident answers None for it.
        await execute_core(session, insert(Incident), incidents)
        await execute_core(session, insert(IncidentEvent), events)
        if links:
            await execute_core(session, insert(AckLink), links)
            await execute_core(session, insert(OutboxMessage), messages)
        return out

    async def _open_in(self, session: AsyncSession, item: tuple[str, dt.datetime]) -> str | None:
        """One incident opened in the caller's transaction (see :meth:`open_incident`)."""
        checkin_id, now = item
        checkin = await session.get(Checkin, checkin_id)
        if checkin is None:
            raise NotFoundError("check-in", checkin_id)
        if not checkin.status.is_final or checkin.outcome is None:
            return None
        urgency = alert_for(checkin.outcome)
        if urgency is None:
            return None
        resident = checkin.resident
        incident = Incident(
            checkin_id=checkin.id,
            resident_id=resident.id,
            district_id=resident.district_id,
            outcome=checkin.outcome,
            urgency=urgency,
            status=IncidentStatus.OPEN,
            code=await _free_code(session),
            step_count=0,
            case_closed_at=checkin.closed_at or now,
            opened_at=now,
        )
        session.add(incident)
        # An IntegrityError here (a second incident for the case) fails the whole batch;
        # GroupCommit then retries each item alone and open_incident answers None for it.
        await session.flush()
        await log_event(
            session,
            incident.id,
            IncidentEventKind.OPENED,
            now,
            detail=f"{OUTCOME_WORDS.get(checkin.outcome, str(checkin.outcome))} "
            f"({URGENCY_WORDS[urgency]}) · 안부 확인 종료 "
            f"{(checkin.closed_at or now).astimezone(self.config.tz):%Y-%m-%d %H:%M:%S}",
        )
        await self._tell_next(session, incident, checkin, now)
        return incident.id

    async def _tell_next(
        self, session: AsyncSession, incident: Incident, checkin: Checkin, now: dt.datetime
    ) -> None:
        """Queue the SMS to the next step on duty, or mark the chain used up."""
        resident = checkin.resident
        chain = await _chain_for(session, incident.district_id, resident.dong)
        steps = _steps(chain) if chain is not None else []
        step = (
            next_step(
                steps,
                incident.step_position,
                now,
                tz=self.config.tz,
                holidays=self.config.holidays,
            )
            if steps
            else None
        )
        if step is None:
            if incident.step_count == 0:
                # Nobody to tell yet: keep the incident open and retry routing (a chain may be
                # added); never drop it.
                if incident.ack_due_at is None:
                    log.error(
                        "incident %s: no escalation chain for district %s dong %r",
                        incident.id,
                        incident.district_id,
                        resident.dong,
                    )
                    await log_event(
                        session,
                        incident.id,
                        IncidentEventKind.NO_CHAIN,
                        now,
                        detail=f"'{resident.dong or '행정동 미기재'}'에 연락 체계가 없습니다",
                    )
                incident.ack_due_at = now + self.config.no_chain_retry
                return
            incident.status = IncidentStatus.EXHAUSTED
            incident.ack_due_at = None
            log.error("incident %s: every step told, nobody acknowledged", incident.id)
            await log_event(session, incident.id, IncidentEventKind.EXHAUSTED, now)
            return
        assert chain is not None  # a step came from it
        chain_step = next(s for s in chain.steps if s.position == step.position)
        official = chain_step.official
        alert = self._alert(
            incident_id=incident.id,
            step_number=incident.step_count + 1,
            facts=_AlertCase(
                outcome=incident.outcome,
                urgency=incident.urgency,
                case_closed_at=incident.case_closed_at,
                code=incident.code,
                resident_name=resident.name,
                dong=resident.dong,
                district_name=resident.district.name,
                reason=checkin.reason,
                attempts=tuple(
                    AttemptFacts(
                        a.attempt_no,
                        a.status,
                        a.result,
                        a.reply,
                        a.originated_at or a.scheduled_for,
                    )
                    for a in checkin.attempts
                ),
            ),
            official=official,
            step=step,
            now=now,
        )
        session.add(AckLink(**alert.link))
        session.add(OutboxMessage(**alert.message))
        incident.step_position = step.position
        incident.step_count += 1
        incident.current_message_id = alert.message["id"]
        incident.ack_due_at = None  # starts when the gateway accepts the SMS
        await log_event(
            session,
            incident.id,
            IncidentEventKind.QUEUED,
            now,
            message_id=alert.message["id"],
            official_id=official.id,
            detail=alert.queued_detail,
        )

    def _alert(
        self,
        *,
        incident_id: str,
        step_number: int,
        facts: _AlertCase,
        official: Official,
        step: Step,
        now: dt.datetime,
    ) -> _Alert:
        """The rows that tell one official of one incident: the link (a link per SMS, so it
        names its official; only its hash is stored) and the SMS, validated."""
        token = secrets.token_urlsafe(16)
        link = {
            "id": new_id(),
            "incident_id": incident_id,
            "official_id": official.id,
            "token_hash": hash_token(token),
            "created_at": now,
            "expires_at": now + self.config.ack_link_ttl,
            "used_at": None,
        }
        composed = render_alert(
            AlertFacts(
                resident_name=facts.resident_name,
                dong=facts.dong,
                district_name=facts.district_name,
                outcome=facts.outcome,
                urgency=facts.urgency,
                reason=facts.reason,
                attempts=facts.attempts,
                closed_at=facts.case_closed_at,
                code=facts.code,
                link=self.config.link(token),
                step_number=step_number,
            ),
            tz=self.config.tz,
        )
        message = outbox_values(
            reference=f"inc{incident_id}.{step_number}",
            to=official.phone,
            sender=self.config.sender,
            text=composed.text,
            kind=composed.kind,
            subject=composed.subject,
            now=now,
            incident_id=incident_id,
            official_id=official.id,
            priority=PRIORITY[facts.urgency],
            ack_timeout_s=step.ack_timeout_s,
        )
        detail = (
            f"{step.position}단계 ({ROLE_WORDS.get(official.role, str(official.role))}) "
            f"{mask_phone(official.phone)}"
        )
        return _Alert(link, message, detail)

    # --- the clock ------------------------------------------------------------------------------

    async def escalate_due(self, now: dt.datetime | None = None) -> int:
        """The timer tick: open incidents the listener missed, and tell the next step of every
        incident whose acknowledgement clock ran out. Returns how many incidents moved."""
        now = now or self._clock.now()
        moved = 0
        for checkin_id in await self._missed_cases(now):
            if await self.open_incident(checkin_id, now) is not None:
                log.warning("incident for check-in %s opened by the sweep", checkin_id)
                moved += 1
        async with self._sessions() as session:
            due = (
                await session.execute(
                    select(Incident.id, Incident.ack_due_at)
                    .where(
                        Incident.status == IncidentStatus.OPEN,
                        Incident.ack_due_at <= now,
                    )
                    .order_by(Incident.ack_due_at)
                    .limit(500)
                )
            ).all()
        for incident_id, due_at in due:
            if due_at is not None and await self._escalate(incident_id, due_at, now):
                moved += 1
        if moved:
            self._wake()
        return moved

    async def _missed_cases(self, now: dt.datetime) -> list[str]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Checkin.id)
                .outerjoin(Incident, Incident.checkin_id == Checkin.id)
                .where(
                    Incident.id.is_(None),
                    Checkin.outcome.in_(ALERT_OUTCOMES),
                    Checkin.closed_at >= now - self.config.sweep_lookback,
                    Checkin.closed_at <= now - self.config.sweep_grace,
                )
                .limit(500)
            )
            return [r[0] for r in rows]

    async def _escalate(self, incident_id: str, due_at: dt.datetime, now: dt.datetime) -> bool:
        async with self._sessions() as session:
            won = await session.execute(
                update(Incident)
                .where(
                    Incident.id == incident_id,
                    Incident.status == IncidentStatus.OPEN,
                    Incident.ack_due_at == due_at,
                )
                .values(ack_due_at=None)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return False  # acknowledged, or another tick took it
            incident = await session.get(Incident, incident_id)
            assert incident is not None
            await session.refresh(incident)
            checkin = await session.get(Checkin, incident.checkin_id)
            assert checkin is not None
            if incident.step_count > 0:
                await log_event(
                    session,
                    incident.id,
                    IncidentEventKind.ESCALATED,
                    now,
                    detail=f"{incident.step_position}단계가 "
                    f"{due_at.astimezone(self.config.tz):%H:%M:%S}까지 확인하지 않음",
                )
            await self._tell_next(session, incident, checkin, now)
            await session.commit()
        log.info("incident %s escalated", incident_id)
        return True

    async def page_now(self, incident_id: str, now: dt.datetime | None = None) -> bool:
        """Tell the chain's first step by SMS now (a transfer nobody accepted). The same
        compare-and-set as the tick, so the two never both page; False when the incident was
        acknowledged or paged meanwhile."""
        now = now or self._clock.now()
        async with self._sessions() as session:
            due_at = await session.scalar(
                select(Incident.ack_due_at).where(
                    Incident.id == incident_id,
                    Incident.status == IncidentStatus.OPEN,
                    # Paged already (the tick ran out the transfer's budget): its own clock
                    # runs; paging now would skip a step's acknowledgement time.
                    Incident.step_count == 0,
                )
            )
        if due_at is None:
            return False
        moved = await self._escalate(incident_id, due_at, now)
        if moved:
            self._wake()
        return moved

    # --- acknowledgements ---------------------------------------------------------------------

    async def acknowledge_in(
        self,
        session: AsyncSession,
        incident: Incident,
        channel: AckChannel,
        official_id: str | None,
        now: dt.datetime,
        detail: str,
    ) -> bool:
        """Acknowledge in the caller's transaction (an SMS reply, a link, the console, the
        transfer's accepted leg); the caller commits."""
        won = await session.execute(
            update(Incident)
            .where(
                Incident.id == incident.id,
                Incident.status.in_((IncidentStatus.OPEN, IncidentStatus.EXHAUSTED)),
            )
            .values(
                status=IncidentStatus.ACKNOWLEDGED,
                acknowledged_at=now,
                acknowledged_by=official_id,
                ack_channel=channel,
                ack_due_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            return False
        cancelled = await cancel_pending(session, incident.id)
        await log_event(
            session,
            incident.id,
            IncidentEventKind.ACKNOWLEDGED,
            now,
            official_id=official_id,
            detail=" · ".join(
                x
                for x in (
                    ACK_CHANNEL_WORDS[channel],
                    detail,
                    f"대기 중이던 문자 {cancelled}건 발송 취소" if cancelled else "",
                )
                if x
            ),
        )
        await session.refresh(incident)
        log.info("incident %s acknowledged by %s", incident.id, channel)
        return True

    async def handle_reply(
        self, sms: dlr.InboundSms, now: dt.datetime | None = None
    ) -> ReplyResult:
        """An official's reply SMS: "<code>" or "<code> <finding word>" acknowledges the
        incident it was sent for, when that incident still waits and the reply comes from the
        number we messaged.

        Every reply is stored with what it did; a repeated message id is dropped. Anything
        else from a number with a waiting incident is a wrong try: after
        ``reply_max_failures`` of them an incident takes no more codes, and the number none
        for ``reply_lockout_window``. Each try is in the incident's log.
        """
        now = now or self._clock.now()
        async with self._sessions() as session:
            row = InboundSms(
                message_id=sms.message_id,
                sender=sms.sender,
                text=sms.text[:2000],
                received_at=now,
            )
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                log.info("reply %s from %s again: dropped", sms.message_id, mask_phone(sms.sender))
                return ReplyResult(ReplyOutcome.DUPLICATE)
            result = await self._reply(session, sms, row, now)
            row.outcome = result.outcome
            row.incident_id = result.incident_ids[0] if result.incident_ids else None
            await session.commit()
        log.info("reply from %s: %s", mask_phone(sms.sender), result.outcome)
        return result

    async def _reply(
        self, session: AsyncSession, sms: dlr.InboundSms, row: InboundSms, now: dt.datetime
    ) -> ReplyResult:
        told = (
            await session.execute(
                select(Incident, OutboxMessage.official_id)
                .join(OutboxMessage, OutboxMessage.incident_id == Incident.id)
                .where(OutboxMessage.to == sms.sender)
                .order_by(Incident.opened_at.desc())
            )
        ).all()
        waiting: dict[str, tuple[Incident, str | None]] = {}
        done: dict[str, Incident] = {}
        for incident, official_id in told:
            if incident.status.ackable:
                waiting.setdefault(incident.id, (incident, official_id))
            else:
                done.setdefault(incident.id, incident)
        parsed = parse_reply(sms.text)
        who = mask_phone(sms.sender)
        if not waiting:
            # Nothing to acknowledge from this number: a late repeat of a used code is
            # "already", anything else (a stranger) touches no incident.
            if parsed is not None:
                for incident in done.values():
                    if hmac.compare_digest(incident.code, parsed.code):
                        await log_event(
                            session,
                            incident.id,
                            IncidentEventKind.REPLY,
                            now,
                            detail=f"{who} 회신 (이미 확인된 건)",
                        )
                        return ReplyResult(ReplyOutcome.ALREADY, (incident.id,))
            return ReplyResult(ReplyOutcome.NO_MATCH)
        await session.flush()
        failures = await session.scalar(
            select(func.count())
            .select_from(InboundSms)
            .where(
                InboundSms.sender == sms.sender,
                InboundSms.received_at > now - self.config.reply_lockout_window,
                InboundSms.outcome.in_([o.value for o in FAILED_TRIES]),
            )
        )
        limit = self.config.reply_max_failures
        number_locked = (failures or 0) >= limit
        match = None
        if parsed is not None and not number_locked:
            # Constant time per candidate; the candidates are the few incidents we told
            # this number about.
            for incident, official_id in waiting.values():
                if hmac.compare_digest(incident.code, parsed.code):
                    match = (incident, official_id)
        if match is not None and match[0].sms_failures < limit:
            incident, official_id = match
            detail = f"{who} 회신"
            await self.acknowledge_in(session, incident, AckChannel.SMS, official_id, now, detail)
            if parsed is not None and parsed.finding is not None:
                await self._record_finding(session, incident, parsed.finding, "", official_id, now)
            return ReplyResult(ReplyOutcome.ACKNOWLEDGED, (incident.id,))
        # A wrong try: counted against every incident this number could acknowledge.
        outcome = (
            ReplyOutcome.LOCKED
            if number_locked or match is not None
            else ReplyOutcome.NO_CODE
            if parsed is None
            else ReplyOutcome.WRONG_CODE
        )
        for incident, official_id in waiting.values():
            incident.sms_failures += 1
            note = (
                f" · {limit}회 틀려 이 건은 더 이상 문자 코드로 확인할 수 없습니다"
                if incident.sms_failures == limit
                else ""
            )
            await log_event(
                session,
                incident.id,
                IncidentEventKind.REPLY,
                now,
                official_id=official_id,
                detail=f"{who} 회신: {REPLY_WORDS[outcome]} ({incident.sms_failures}번째){note}",
            )
        if number_locked:
            log.warning("reply from %s ignored: too many wrong codes", who)
        return ReplyResult(outcome, tuple(waiting))

    async def _record_finding(
        self,
        session: AsyncSession,
        incident: Incident,
        finding: Finding,
        note: str,
        official_id: str | None,
        now: dt.datetime,
    ) -> None:
        incident.finding = finding
        incident.finding_note = note
        incident.finding_at = now
        incident.closed_at = now
        session.add(
            ResidentFinding(
                resident_id=incident.resident_id,
                incident_id=incident.id,
                official_id=official_id,
                finding=finding,
                note=note,
                at=now,
            )
        )
        await log_event(
            session,
            incident.id,
            IncidentEventKind.FINDING,
            now,
            official_id=official_id,
            detail=FINDING_LABELS[finding] + (f": {note[:200]}" if note else ""),
        )
        # Outcome feedback (every way a finding arrives: link, reply, amendment): a false
        # alarm widens the person's thresholds for the sources that raised this alert; a true
        # alarm undoes earlier widening.
        await on_finding(
            session,
            resident_id=incident.resident_id,
            finding=finding.value,
            now=now,
            incident_id=incident.id,
            checkin_id=incident.checkin_id,
        )

    async def view(self, token: str, now: dt.datetime | None = None) -> IncidentView:
        now = now or self._clock.now()
        async with self._sessions() as session:
            _link, incident = await self._by_token(session, token, now)
            resident = await session.get(Resident, incident.resident_id)
            assert resident is not None
            return IncidentView(incident, mask_name(resident.name), resident.dong)

    async def _by_token(
        self, session: AsyncSession, token: str, now: dt.datetime
    ) -> tuple[AckLink, Incident]:
        row = (
            await session.execute(
                select(AckLink, Incident)
                .join(Incident, Incident.id == AckLink.incident_id)
                .where(AckLink.token_hash == hash_token(token))
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError("incident", "for this link")
        link, incident = row
        if link.expires_at <= now:
            raise GoneError("this link has expired; reply to the SMS with its code instead")
        return link, incident

    async def acknowledge_link(
        self,
        token: str,
        finding: Finding,
        note: str = "",
        now: dt.datetime | None = None,
        *,
        amend: bool = False,
    ) -> Incident:
        """The link: acknowledge the incident and record what was found, once. A link that
        was used, or an incident whose finding is recorded, takes a change only as an
        explicit amendment (``amend``), stored with who, when, before and after."""
        now = now or self._clock.now()
        note = note.strip()[:2000]
        async with self._sessions() as session:
            link, incident = await self._by_token(session, token, now)
            if incident.finding is None and link.used_at is None:
                await self.acknowledge_in(
                    session, incident, AckChannel.LINK, link.official_id, now, ""
                )
                await self._record_finding(session, incident, finding, note, link.official_id, now)
            elif not amend:
                raise ConflictError(
                    "this link was already used"
                    + (f" (finding: {incident.finding})" if incident.finding else "")
                    + "; a change must be sent as an amendment"
                )
            elif incident.finding is finding and (incident.finding_note or "") == note:
                raise ConflictError(f"the finding is already {finding}")
            else:
                before, before_note = incident.finding, incident.finding_note or ""
                session.add(
                    FindingAmendment(
                        incident_id=incident.id,
                        link_id=link.id,
                        official_id=link.official_id,
                        at=now,
                        finding_before=before,
                        finding_after=finding,
                        note_before=before_note,
                        note_after=note,
                    )
                )
                await self._record_finding(session, incident, finding, note, link.official_id, now)
                await log_event(
                    session,
                    incident.id,
                    IncidentEventKind.AMENDED,
                    now,
                    official_id=link.official_id,
                    detail=f"{FINDING_LABELS[before] if before else '없음'} → "
                    f"{FINDING_LABELS[finding]}",
                )
            link.used_at = link.used_at or now
            await session.commit()
            return incident

    async def acknowledge_official(
        self,
        incident_id: str,
        official_id: str | None,
        finding: Finding,
        note: str = "",
        now: dt.datetime | None = None,
        *,
        by: str = "",
    ) -> Incident:
        """The console: a logged-in official acknowledges an incident and records what was
        found, as the link does (the chain stops: pending SMS are cancelled, no next step). A
        recorded finding is changed only by an amendment, never here."""
        now = now or self._clock.now()
        note = note.strip()[:2000]
        async with self._sessions() as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                raise NotFoundError("incident", incident_id)
            if incident.finding is not None:
                raise ConflictError(f"the finding is already recorded ({incident.finding})")
            await self.acknowledge_in(
                session, incident, AckChannel.CONSOLE, official_id, now, by.strip()
            )
            await self._record_finding(session, incident, finding, note, official_id, now)
            await session.commit()
            return incident

    # --- delivery reports -----------------------------------------------------------------

    async def record_delivery(
        self, report: dlr.DeliveryReport, now: dt.datetime | None = None
    ) -> bool:
        outcome = await self._reports.submit((report, now or self._clock.now()))
        return outcome is not DeliveryOutcome.UNKNOWN

    # --- the daily device digest --------------------------------------------------------------

    async def send_device_digest(self, now: dt.datetime | None = None) -> int:
        """Queue one SMS per district listing its open device problems (dead plug, app not
        syncing): a job for staff, not a page. At most one per district per local day (the
        reference carries the date). Returns how many digests were queued."""
        now = now or self._clock.now()
        try:
            from anbu.db.models_signals import Device, DeviceTask
            from anbu.domain.risk import TaskStatus
        except ImportError:  # the risk room is not installed
            return 0
        async with self._sessions() as session:
            conn = await session.connection()
            present = await conn.run_sync(lambda c: inspect(c).has_table("device_tasks"))
            if not present:
                log.warning("device digest: no device_tasks table (risk migration missing)")
                return 0
            rows = (
                await session.execute(
                    select(DeviceTask, Device, Resident)
                    .join(Device, Device.id == DeviceTask.device_pk)
                    .join(Resident, Resident.id == DeviceTask.resident_id)
                    .where(DeviceTask.status == TaskStatus.OPEN)
                    .order_by(Resident.district_id, Resident.dong, DeviceTask.opened_at)
                )
            ).all()
            by_district: dict[int, list[str]] = {}
            for task, device, resident in rows:
                since = device.last_seen_at or task.opened_at
                hours = max(0.0, (now - since).total_seconds() / 3600)
                by_district.setdefault(resident.district_id, []).append(
                    digest_line(
                        resident.name,
                        resident.dong,
                        DEVICE_WORDS.get(str(device.kind), str(device.kind)),
                        ISSUE_WORDS.get(str(task.kind), str(task.kind)),
                        hours,
                    )
                )
            day = now.astimezone(self.config.tz).date()
            queued = 0
            for district_id, items in by_district.items():
                reference = f"dig{district_id}.{day:%Y%m%d}"
                if await session.scalar(
                    select(OutboxMessage.id).where(OutboxMessage.reference == reference)
                ):
                    continue
                chain = await _chain_for(session, district_id, "")
                steps = [s for s in (chain.steps if chain else []) if s.official.active]
                if not steps:
                    log.error("device digest: no chain for district %s", district_id)
                    continue
                district = await session.get(District, district_id)
                composed = render_digest(district.name if district else "", items, day)
                enqueue(
                    session,
                    reference=reference,
                    to=steps[0].official.phone,
                    sender=self.config.sender,
                    text=composed.text,
                    kind=composed.kind,
                    subject=composed.subject,
                    now=now,
                    official_id=steps[0].official_id,
                    priority=DIGEST_PRIORITY,
                )
                queued += 1
            await session.commit()
        if queued:
            self._wake()
        return queued


DEVICE_WORDS = {
    "plug": "스마트플러그",
    "app": "걸음앱",
    "motion_sensor": "동작센서",
    "door_sensor": "문열림센서",
}
ISSUE_WORDS = {"stale": "무신호", "offline": "꺼짐"}


class EscalationRuntime:
    """What ``anbu serve`` runs for escalation: the service, the outbox worker (a task), and
    the scheduler's tick (timers, the sweep, the daily device digest)."""

    def __init__(
        self,
        service: EscalationService,
        worker: OutboxWorker,
        clock: Clock,
        digest_time: dt.time,
    ) -> None:
        self.service = service
        self.worker = worker
        self._clock = clock
        self._digest_time = digest_time
        self._digest_day: dt.date | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def on_checkin_closed(self) -> Callable[[CheckinClosed], Awaitable[None]]:
        return self.service.on_checkin_closed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.worker.run(), name="sms-outbox")

    async def tick(self) -> int:
        """Every few seconds (``scheduling.escalation_interval_s``)."""
        now = self._clock.now()
        moved = await self.service.escalate_due(now)
        local = now.astimezone(self.service.config.tz)
        if local.time() >= self._digest_time and self._digest_day != local.date():
            # Once a day per process; the outbox reference makes it once a day overall.
            await self.service.send_device_digest(now)
            self._digest_day = local.date()
        return moved

    async def aclose(self) -> None:
        self.worker.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.worker.aclose()
