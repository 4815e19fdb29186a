"""The scheduler's tables: programs (retry + calling hours), per-resident overrides, holds,
do-not-call, routine schedules, dispatcher workers and their claims, self-test runs.

Times of day are stored as minutes after local midnight (0..1440; 1440 = 24:00) and weekdays as
a string of digits ("01234" = Monday..Friday), so both backends store them the same way.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import District, Resident, utcnow


class Program(Base):
    """A calling programme: how often to retry and when calls are allowed.

    A programme is shared (``district_id`` NULL: built in, every district may use it, changed
    by administrators) or a district's own. A district's own programme may stand in for a
    shared one in that district (``replaces_id``): a district admin who edits a shared
    programme edits their district's copy, so other districts keep their hours. One default per
    scope (``is_default``): a resident without a programme of their own follows their
    district's default, else the shared default; with no program row at all the built-in
    defaults apply (:class:`anbu.domain.program_scope.ProgramBook`).
    """

    __tablename__ = "programs"
    __table_args__ = (
        # One stand-in per shared programme and district (two admins saving at once: one wins).
        Index("ux_programs_district_replaces", "district_id", "replaces_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    district_id: Mapped[int | None] = mapped_column(
        ForeignKey("districts.id"), nullable=True, index=True
    )
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    interval_s: Mapped[int] = mapped_column(Integer, default=600)
    busy_interval_s: Mapped[int] = mapped_column(Integer, default=180)
    failure_interval_s: Mapped[int] = mapped_column(Integer, default=120)
    max_callbacks: Mapped[int] = mapped_column(Integer, default=1)
    callback_delay_s: Mapped[int] = mapped_column(Integer, default=3600)
    tz: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    start_min: Mapped[int] = mapped_column(Integer, default=9 * 60)
    end_min: Mapped[int] = mapped_column(Integer, default=18 * 60)
    weekdays: Mapped[str] = mapped_column(String(7), default="01234")
    call_on_holidays: Mapped[bool] = mapped_column(Boolean, default=False)
    severe_start_min: Mapped[int] = mapped_column(Integer, default=7 * 60)
    severe_end_min: Mapped[int] = mapped_column(Integer, default=22 * 60)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    district: Mapped[District | None] = relationship(lazy="joined")

    @classmethod
    def any_hour(cls, name: str, **columns: object) -> Program:
        """The default program calling every day, holidays included, at any hour (the local
        demo stack and tests; a district's programs keep their calling hours)."""
        fixed: dict[str, object] = {
            "is_default": True,
            "start_min": 0,
            "end_min": 24 * 60,
            "weekdays": "0123456",
            "call_on_holidays": True,
        }
        return cls(name=name, **{**fixed, **columns})


class ResidentSchedule(Base):
    """One resident's programme and preferred hours; ``None`` keeps the programme's value."""

    __tablename__ = "resident_schedules"

    resident_id: Mapped[str] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), nullable=True)
    start_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    end_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    weekdays: Mapped[str | None] = mapped_column(String(7), nullable=True)
    call_on_holidays: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    tz: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    program: Mapped[Program | None] = relationship(lazy="joined")


class CallHold(Base):
    """No calls to the resident in [starts_at, ends_at); ``ends_at`` NULL: until lifted."""

    __tablename__ = "call_holds"
    __table_args__ = (Index("ix_call_holds_resident", "resident_id", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class DoNotCall(Base):
    """A number the system must never dial (by number, so it holds whoever it belongs to)."""

    __tablename__ = "do_not_call"

    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class RoutineSchedule(Base):
    """A standing check-in: every week on ``weekday`` at ``time_min`` local time.

    ``last_slot_at`` is the last slot a check-in was opened for; it is written in the same
    transaction as the check-in, so a crash never opens a slot twice or skips it.
    """

    __tablename__ = "routine_schedules"
    __table_args__ = (UniqueConstraint("resident_id", "weekday", "time_min"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    time_min: Mapped[int] = mapped_column(Integer)  # minutes after local midnight
    tz: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_slot_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    resident: Mapped[Resident] = relationship(lazy="joined")


class DispatcherWorker(Base):
    """One life of one dispatcher process. On PostgreSQL the process holds an advisory lock
    keyed by this id for as long as it lives, so others can tell at once that it died."""

    __tablename__ = "dispatcher_workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(100), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AttemptClaim(Base):
    """Which worker life claimed (and is dialing) an attempt: reconciliation after a crash only
    touches attempts whose worker is gone."""

    __tablename__ = "attempt_claims"

    attempt_id: Mapped[str] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[int] = mapped_column(ForeignKey("dispatcher_workers.id"), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SelfTestRun(Base):
    """One daily self-test call (a known test line that answers and presses 1)."""

    __tablename__ = "self_test_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    result: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
