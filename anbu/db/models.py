"""The spine's tables: districts, API keys, residents, check-ins and call attempts."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from anbu.db.base import Base, UtcDateTime
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.replies import Reply


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def enum_column(enum_cls: type[enum.Enum], **kw: Any) -> Any:
    # Stored as short strings, no native enum / CHECK constraint: adding a value needs no
    # table rewrite on SQLite and no ALTER TYPE on PostgreSQL.
    return mapped_column(
        Enum(
            enum_cls,
            native_enum=False,
            create_constraint=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        ),
        **kw,
    )


api_key_districts = Table(
    "api_key_districts",
    Base.metadata,
    Column("api_key_id", ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("district_id", ForeignKey("districts.id", ondelete="CASCADE"), primary_key=True),
)


class District(Base):
    __tablename__ = "districts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # sha256 of the key: the key itself is shown once at creation and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # holds the admin scope
    # anbu.domain.access.Scope values, comma-separated, closed under implication.
    scopes: Mapped[str] = mapped_column(String(64), default="read,write")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Updated at most once a minute (anbu.domain.access.LAST_USED_RESOLUTION).
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Outcome webhooks (anbu.services.webhooks): where this key's events go, and the HMAC key
    # they are signed with (kept readable: signing needs it).
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    webhook_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    districts: Mapped[list[District]] = relationship(secondary=api_key_districts, lazy="selectin")


class Resident(Base):
    __tablename__ = "residents"
    __table_args__ = (UniqueConstraint("district_id", "external_ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(16))
    dong: Mapped[str] = mapped_column(String(50), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    district: Mapped[District] = relationship(lazy="joined")


class Checkin(Base):
    __tablename__ = "checkins"
    __table_args__ = (Index("ix_checkins_resident_status", "resident_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"))
    source: Mapped[CheckinSource] = enum_column(CheckinSource, default=CheckinSource.API)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[CheckinStatus] = enum_column(CheckinStatus, default=CheckinStatus.PENDING)
    outcome: Mapped[Outcome | None] = enum_column(Outcome, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resident: Mapped[Resident] = relationship(lazy="joined")
    attempts: Mapped[list[CallAttempt]] = relationship(
        back_populates="checkin", order_by="CallAttempt.attempt_no", lazy="selectin"
    )


class CallAttempt(Base):
    __tablename__ = "call_attempts"
    __table_args__ = (
        UniqueConstraint("checkin_id", "attempt_no"),
        Index("ix_call_attempts_due", "status", "scheduled_for"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    checkin_id: Mapped[str] = mapped_column(ForeignKey("checkins.id"), index=True)
    attempt_no: Mapped[int] = mapped_column(Integer)
    # Our own Asterisk channel id (Originate ChannelId): the AGI session and every AMI event
    # for this call carry it, which is how they are tied back to this row.
    channel_id: Mapped[str] = mapped_column(String(64), unique=True, default=new_id)
    number: Mapped[str] = mapped_column(String(16))
    # The engine node (settings' node name) that dialed it: crash recovery asks that node.
    node: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[AttemptStatus] = enum_column(AttemptStatus, default=AttemptStatus.SCHEDULED)
    result: Mapped[CallResult | None] = enum_column(CallResult, nullable=True)
    reply: Mapped[Reply | None] = enum_column(Reply, nullable=True)
    hangup_cause: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The far end's last SIP status (480, 404, 183 when our ring timeout ended it), if any.
    sip_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    keys: Mapped[str] = mapped_column(String(32), default="")
    transcript: Mapped[str | None] = mapped_column(Text, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    scheduled_for: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    originated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    checkin: Mapped[Checkin] = relationship(back_populates="attempts")
