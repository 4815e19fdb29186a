"""Retention of personal records per kind (``ANBU_RETENTION__*``): transcripts, closed
check-ins with their call attempts (and the settled outcome webhooks, on the same keep),
acknowledged incidents with everything about them, and the access log. Raw signal events
have their own job (:mod:`anbu.risk.retention`).

Never deleted, however old: a check-in that is not final (it may still call), an incident not
acknowledged (open or exhausted: someone must still answer for it), a check-in whose incident
is kept, and the transcripts of a case that is not final or whose incident still waits.

Work goes in chunks of ids, one short transaction each, so the dispatcher and the API never
wait long behind it (SQLite has one writer).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, delete, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_audit import AuditEntry
from anbu.db.models_escalation import (
    AckLink,
    FindingAmendment,
    InboundSms,
    Incident,
    IncidentEvent,
    OutboxMessage,
    ResidentFinding,
)
from anbu.db.models_webhooks import DeliveryState, WebhookDelivery
from anbu.domain.checkin import CheckinStatus
from anbu.domain.incidents import IncidentStatus

if TYPE_CHECKING:
    from anbu.settings import Settings

log = logging.getLogger(__name__)

FINAL_CHECKIN = [s for s in CheckinStatus if s.is_final]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each kind is kept; None keeps it forever."""

    transcripts_days: int | None = 90
    attempts_days: int | None = 365
    incidents_days: int | None = 3 * 365
    audit_days: int | None = 2 * 365

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        r = settings.retention
        return cls(r.transcripts_days, r.attempts_days, r.incidents_days, r.audit_days)


@dataclass
class RetentionReport:
    transcripts: int = 0  # attempts whose transcript was erased
    checkins: int = 0
    attempts: int = 0
    incidents: int = 0
    audit: int = 0
    webhooks: int = 0  # settled outcome webhook deliveries
    cutoffs: dict[str, dt.datetime] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"erased {self.transcripts} transcript(s); deleted {self.checkins} check-in(s) with"
            f" {self.attempts} call attempt(s), {self.incidents} incident(s),"
            f" {self.audit} access log row(s), {self.webhooks} webhook delivery(ies)"
        )


def _cutoff(now: dt.datetime, days: int | None) -> dt.datetime | None:
    return None if days is None else now - dt.timedelta(days=days)


async def _chunk_ids(session: AsyncSession, query: Select[Any], chunk: int) -> list[Any]:
    """The ids of the next chunk ``query`` selects."""
    return list((await session.execute(query.limit(chunk))).scalars())


async def _delete_where(session: AsyncSession, table: Any, condition: ColumnElement[bool]) -> int:
    """A bulk DELETE, not synchronised into the session (none of the rows is loaded in it);
    returns how many rows went."""
    result = await session.execute(
        delete(table).where(condition).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _erase_transcripts(
    session: AsyncSession, cutoff: dt.datetime, chunk: int
) -> tuple[int, ...]:
    ids = await _chunk_ids(
        session,
        select(CallAttempt.id)
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(
            CallAttempt.transcript.is_not(None),
            func.coalesce(CallAttempt.ended_at, CallAttempt.scheduled_for) < cutoff,
            Checkin.status.in_(FINAL_CHECKIN),
            # Evidence an official may still need: the case's incident waits.
            ~exists().where(
                Incident.checkin_id == Checkin.id,
                Incident.status != IncidentStatus.ACKNOWLEDGED,
            ),
        ),
        chunk,
    )
    if ids:
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.id.in_(ids))
            .values(transcript=None)
            .execution_options(synchronize_session=False)
        )
    return (len(ids),)


async def _delete_incidents(
    session: AsyncSession, cutoff: dt.datetime, chunk: int
) -> tuple[int, ...]:
    ids = await _chunk_ids(
        session,
        select(Incident.id).where(
            Incident.status == IncidentStatus.ACKNOWLEDGED,
            func.coalesce(Incident.closed_at, Incident.acknowledged_at) < cutoff,
        ),
        chunk,
    )
    if ids:
        for table, column in (
            (ResidentFinding, ResidentFinding.incident_id),
            (IncidentEvent, IncidentEvent.incident_id),
            (OutboxMessage, OutboxMessage.incident_id),
            (InboundSms, InboundSms.incident_id),
            # ack_links and finding_amendments cascade on PostgreSQL; deleted here too so
            # SQLite (foreign keys off during migrations) keeps no orphan rows either.
            (AckLink, AckLink.incident_id),
            (FindingAmendment, FindingAmendment.incident_id),
        ):
            await _delete_where(session, table, column.in_(ids))
        await _delete_where(session, Incident, Incident.id.in_(ids))
    return (len(ids),)


async def _delete_checkins(
    session: AsyncSession, cutoff: dt.datetime, chunk: int
) -> tuple[int, ...]:
    ids = await _chunk_ids(
        session,
        select(Checkin.id).where(
            Checkin.status.in_(FINAL_CHECKIN),
            func.coalesce(Checkin.closed_at, Checkin.updated_at) < cutoff,
            ~exists().where(Incident.checkin_id == Checkin.id),
        ),
        chunk,
    )
    attempts = 0
    if ids:
        attempts = await _delete_where(session, CallAttempt, CallAttempt.checkin_id.in_(ids))
        await _delete_where(session, Checkin, Checkin.id.in_(ids))
    return len(ids), attempts


async def _delete_webhooks(
    session: AsyncSession, cutoff: dt.datetime, chunk: int
) -> tuple[int, ...]:
    ids = await _chunk_ids(
        session,
        select(WebhookDelivery.id).where(
            WebhookDelivery.status.not_in([DeliveryState.PENDING, DeliveryState.SENDING]),
            WebhookDelivery.created_at < cutoff,
        ),
        chunk,
    )
    if ids:
        await _delete_where(session, WebhookDelivery, WebhookDelivery.id.in_(ids))
    return (len(ids),)


async def _delete_audit(session: AsyncSession, cutoff: dt.datetime, chunk: int) -> tuple[int, ...]:
    ids = await _chunk_ids(
        session,
        select(AuditEntry.id).where(AuditEntry.at < cutoff).order_by(AuditEntry.id),
        chunk,
    )
    if ids:
        if session.get_bind().dialect.name == "postgresql":
            # The append-only trigger lets this transaction, and only it, delete old rows.
            await session.execute(text("SET LOCAL anbu.audit_purge = 'on'"))
        await _delete_where(session, AuditEntry, AuditEntry.id.in_(ids))
    return (len(ids),)


Step = Callable[[AsyncSession, dt.datetime, int], Awaitable[tuple[int, ...]]]


async def _chunks(
    sessions: async_sessionmaker[AsyncSession], step: Step, cutoff: dt.datetime, chunk: int
) -> list[int]:
    """Run ``step`` a chunk at a time, each in its own transaction, until a chunk comes back
    short; returns its counts summed (the first count is the chunk's size)."""
    totals: list[int] = []
    while True:
        async with sessions() as session:
            counts = await step(session, cutoff, chunk)
            await session.commit()
        totals = [a + b for a, b in zip(totals or [0] * len(counts), counts, strict=True)]
        if counts[0] < chunk:
            return totals


async def apply_retention(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    policy: RetentionPolicy,
    *,
    chunk: int = 500,
) -> RetentionReport:
    """Erase and delete what each kind's keep has passed; returns the counts."""
    report = RetentionReport()
    if (cut := _cutoff(now, policy.transcripts_days)) is not None:
        report.cutoffs["transcripts"] = cut
        (report.transcripts,) = await _chunks(sessions, _erase_transcripts, cut, chunk)
    # Incidents first: a check-in goes only once no incident refers to it.
    if (cut := _cutoff(now, policy.incidents_days)) is not None:
        report.cutoffs["incidents"] = cut
        (report.incidents,) = await _chunks(sessions, _delete_incidents, cut, chunk)
    if (cut := _cutoff(now, policy.attempts_days)) is not None:
        report.cutoffs["attempts"] = cut
        report.checkins, report.attempts = await _chunks(sessions, _delete_checkins, cut, chunk)
        # What the integrator was told about those cases: settled deliveries, same keep.
        (report.webhooks,) = await _chunks(sessions, _delete_webhooks, cut, chunk)
    if (cut := _cutoff(now, policy.audit_days)) is not None:
        report.cutoffs["audit"] = cut
        (report.audit,) = await _chunks(sessions, _delete_audit, cut, chunk)
    if any((report.transcripts, report.checkins, report.incidents, report.audit, report.webhooks)):
        log.info("retention: %s", report.line())
    return report
