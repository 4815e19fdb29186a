"""Risk-signal tables: monitoring profiles, holds, devices, raw signal events, per-channel
baselines, device-issue tasks and risk assessments.

The sweep reads ``signal_states`` (one row per resident and channel) and ``devices``, never
``signal_events``: raw events are kept for audit and replay, their summary lives in the states.
"""

from __future__ import annotations

import array
import datetime as dt
import sys
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import enum_column, new_id, utcnow
from anbu.domain.risk import (
    Channel,
    DeviceIssueKind,
    DeviceKind,
    HoldReason,
    Level,
    RiskCategory,
    SignalKind,
    TaskStatus,
    Tier,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants a 64-bit sequence.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class MonitoringProfile(Base):
    __tablename__ = "monitoring_profiles"

    resident_id: Mapped[str] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    tier: Mapped[Tier] = enum_column(Tier, default=Tier.CALLS)
    category: Mapped[RiskCategory] = enum_column(RiskCategory, default=RiskCategory.MEDIUM)
    window_h_override: Mapped[float | None] = mapped_column(Float, nullable=True)
    consent_call_records: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_app: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_iot: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The current level (last assessment); a non-none level keeps the resident in the sweep.
    level: Mapped[Level] = enum_column(Level, default=Level.NONE, index=True)
    level_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Per-channel widening in force from officials' findings ("calls=24,power=48"), kept equal
    # to the sum of the unreverted rows of feedback_steps (anbu.risk.feedback).
    widen_h: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class MonitoringHold(Base):
    __tablename__ = "monitoring_holds"
    __table_args__ = (Index("ix_monitoring_holds_resident_ends", "resident_id", "ends_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reason: Mapped[HoldReason] = enum_column(HoldReason)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    # Device ids are the vendor's, chosen by each district's integrator: unique per district
    # only, so two districts may use the same id, and one district can never reach (or learn
    # of) another's device by naming it.
    __table_args__ = (UniqueConstraint("district_id", "device_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The vendor's id for the device (MQTT topic segment, event ``device_id``).
    device_id: Mapped[str] = mapped_column(String(64))
    # The owner's district (a resident does not move districts): the id's namespace.
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"), index=True)
    kind: Mapped[DeviceKind] = enum_column(DeviceKind)
    expected_interval_s: Mapped[int] = mapped_column(Integer, default=600)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # When it turns stale if nothing more arrives: the sweep finds dead devices by this index.
    stale_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SignalEvent(Base):
    __tablename__ = "signal_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_signal_events_resident_at", "resident_id", "at"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    # Stored qualified by the district (anbu.risk.ingest.stored_event_id: "<district id>/<id
    # as sent>"), so (source, event_id) is unique per district: another district's id is
    # neither a duplicate of ours nor a way to probe which ids we sent.
    event_id: Mapped[str] = mapped_column(String(160))
    # No foreign keys on the hot insert path: the ingestion service resolved both already.
    resident_id: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[SignalKind] = enum_column(SignalKind)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    attrs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


_SWAP = sys.byteorder == "little"


def pack_floats(values: list[float]) -> bytes:
    """A list of floats as stored in ``signal_states.hourly``/``ring``: IEEE 754 doubles,
    big-endian (network order, as PostgreSQL's ``float8send`` writes them), 8 bytes each.

    Why not JSON (what 0002 stored): ingesting a carrier's daily feed reads, changes and writes
    one baseline per event, and parsing and printing 80 floats as JSON cost ~40 us per baseline
    against ~3 us for this, the largest single cost of that path (see anbu.risk.bulk). The
    doubles are stored exactly, so a baseline read back is the one that was saved.
    """
    a = array.array("d", values)
    if _SWAP:
        a.byteswap()
    return a.tobytes()


def unpack_floats(data: bytes) -> list[float]:
    """The inverse of :func:`pack_floats`."""
    a = array.array("d", data)
    if _SWAP:
        a.byteswap()
    return a.tolist()


class FloatArray(TypeDecorator[list[float]]):
    """A list of floats in one binary column (:func:`pack_floats`), BLOB / bytea."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: list[float] | None, dialect: Dialect) -> bytes | None:
        return None if value is None else pack_floats(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> list[float] | None:
        return None if value is None else unpack_floats(bytes(value))


class SignalState(Base):
    """One resident's running baseline for one channel (see :class:`anbu.domain.risk.Baseline`)."""

    __tablename__ = "signal_states"

    resident_id: Mapped[str] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = enum_column(Channel, primary_key=True)
    days: Mapped[int] = mapped_column(Integer, default=0)
    hourly: Mapped[list[float]] = mapped_column(FloatArray)
    ring: Mapped[list[float]] = mapped_column(FloatArray)
    ring_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_activity_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_event_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    # When time alone (no further events) could change the channel's status: the sweep's index.
    # See anbu.domain.risk.status_due_at.
    status_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeviceTask(Base):
    """A device that stopped reporting: a job for staff (visit, replug), not a call."""

    __tablename__ = "device_tasks"
    __table_args__ = (Index("ix_device_tasks_device_status", "device_pk", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    device_pk: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"), index=True)
    kind: Mapped[DeviceIssueKind] = enum_column(DeviceIssueKind)
    status: Mapped[TaskStatus] = enum_column(TaskStatus, default=TaskStatus.OPEN, index=True)
    detail: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(200), nullable=True)


class RiskAssessment(Base):
    """A change of a resident's level, with the evidence that made it."""

    __tablename__ = "risk_assessments"
    __table_args__ = (Index("ix_risk_assessments_resident_at", "resident_id", "assessed_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    level: Mapped[Level] = enum_column(Level)
    previous_level: Mapped[Level] = enum_column(Level)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    explanation: Mapped[str] = mapped_column(Text)
    checkin_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    assessed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
