"""Escalation tables: officials, chains, incidents with their timed log, the SMS outbox,
incoming SMS (replies) and what officials found.

Every outgoing SMS is a row in ``sms_outbox`` before any provider sees it; its ``reference``
is our idempotency key (it travels in Kannel's dlr-url, Solapi's customFields and the webhook's
Idempotency-Key). Status moves pending -> sending -> sent (or failed) by compare-and-set, so
two workers never send the same row; the delivery report columns are separate and only move
forward (a late "accepted" never overwrites "delivered").
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import District, enum_column, new_id, utcnow
from anbu.domain.checkin import Outcome
from anbu.domain.escalation import Finding, Urgency
from anbu.domain.incidents import (
    AckChannel,
    DeliveryStatus,
    IncidentEventKind,
    IncidentStatus,
    OfficialRole,
    OutboxStatus,
)
from anbu.domain.sms_text import SmsKind


class Official(Base):
    __tablename__ = "officials"
    __table_args__ = (Index("ix_officials_district_dong", "district_id", "dong"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    dong: Mapped[str] = mapped_column(String(50), default="")  # "" = the whole district
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(16), index=True)
    role: Mapped[OfficialRole] = enum_column(OfficialRole, default=OfficialRole.DONG)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    district: Mapped[District] = relationship(lazy="joined")


class EscalationChain(Base):
    """Who is told for a district's dong (``dong`` "" = every dong without its own chain)."""

    __tablename__ = "escalation_chains"
    __table_args__ = (UniqueConstraint("district_id", "dong"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    dong: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    steps: Mapped[list[EscalationStep]] = relationship(
        order_by="EscalationStep.position",
        lazy="selectin",
        cascade="all, delete-orphan",
    )


class EscalationStep(Base):
    __tablename__ = "escalation_steps"
    __table_args__ = (UniqueConstraint("chain_id", "position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    chain_id: Mapped[str] = mapped_column(ForeignKey("escalation_chains.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    official_id: Mapped[str] = mapped_column(ForeignKey("officials.id"))
    ack_timeout_s: Mapped[int] = mapped_column(Integer)
    # On duty: weekdays a shift starts on ("0123456", Monday = 0), local start/end minutes
    # (end <= start runs past midnight; equal = all day), and whether shifts start on holidays.
    duty_days: Mapped[str] = mapped_column(String(7), default="0123456")
    duty_start_min: Mapped[int] = mapped_column(Integer, default=0)
    duty_end_min: Mapped[int] = mapped_column(Integer, default=0)
    duty_on_holidays: Mapped[bool] = mapped_column(Boolean, default=True)
    official: Mapped[Official] = relationship(lazy="joined")


class Incident(Base):
    """One alert about one closed check-in, from the first SMS to the acknowledgement."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_status_due", "status", "ack_due_at"),
        Index("ix_incidents_code_status", "code", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # One incident per case: the listener and the sweep may both try; the second one loses.
    checkin_id: Mapped[str] = mapped_column(ForeignKey("checkins.id"), unique=True)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"), index=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    outcome: Mapped[Outcome] = enum_column(Outcome)
    urgency: Mapped[Urgency] = enum_column(Urgency)
    status: Mapped[IncidentStatus] = enum_column(IncidentStatus, default=IncidentStatus.OPEN)
    code: Mapped[str] = mapped_column(String(8))
    # The step told last (None: nobody yet) and its message; when its ack clock runs out.
    step_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step_count: Mapped[int] = mapped_column(Integer, default=0)  # how many steps were told
    current_message_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ack_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    case_closed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    opened_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(ForeignKey("officials.id"), nullable=True)
    ack_channel: Mapped[AckChannel | None] = enum_column(AckChannel, nullable=True)
    finding: Mapped[Finding | None] = enum_column(Finding, nullable=True)
    finding_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    finding_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Wrong codes replied for this incident: at escalation.reply_max_failures SMS codes stop
    # acknowledging it (the link still does).
    sms_failures: Mapped[int] = mapped_column(Integer, default=0)


class AckLink(Base):
    """One acknowledgement link, sent in one SMS to one official. Only the SHA-256 of its
    token is stored (the token itself is in the SMS alone): a copy of the database opens no
    link. It expires, and acknowledges once; a later change of the finding is an amendment."""

    __tablename__ = "ack_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    official_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class FindingAmendment(Base):
    """A finding changed after it was recorded: who, when, before and after (never a silent
    overwrite)."""

    __tablename__ = "finding_amendments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    link_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    official_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finding_before: Mapped[Finding | None] = enum_column(Finding, nullable=True)
    finding_after: Mapped[Finding] = enum_column(Finding)
    note_before: Mapped[str] = mapped_column(Text, default="")
    note_after: Mapped[str] = mapped_column(Text, default="")


class IncidentEvent(Base):
    """The incident log: every step, timed (milliseconds, shown to the second)."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_at", "incident_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    kind: Mapped[IncidentEventKind] = enum_column(IncidentEventKind)
    official_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboxMessage(Base):
    __tablename__ = "sms_outbox"
    __table_args__ = (
        Index("ix_sms_outbox_due", "status", "next_attempt_at"),
        Index("ix_sms_outbox_incident", "incident_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    incident_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    official_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(16))
    kind: Mapped[SmsKind] = enum_column(SmsKind)
    subject: Mapped[str | None] = mapped_column(String(100), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # urgent first
    # Seconds the recipient has to acknowledge once the gateway accepted it (alerts only).
    ack_timeout_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[OutboxStatus] = enum_column(OutboxStatus, default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    provider: Mapped[str | None] = mapped_column(String(20), nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    refused_by: Mapped[str] = mapped_column(String(100), default="")  # providers that said no
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Delivery reports (Kannel): the latest status, never moved back from a final one.
    delivery: Mapped[DeliveryStatus | None] = enum_column(DeliveryStatus, nullable=True)
    delivery_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    accepted_report_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class InboundSms(Base):
    """Every SMS Kannel handed us (officials' replies); ``message_id`` drops retried ones."""

    __tablename__ = "sms_inbound"
    __table_args__ = (Index("ix_sms_inbound_sender_at", "sender", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    sender: Mapped[str] = mapped_column(String(24))
    text: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    incident_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # What the reply did (escalation.service.ReplyOutcome): wrong tries per number are counted
    # from here.
    outcome: Mapped[str | None] = mapped_column(String(24), nullable=True)


class ResidentFinding(Base):
    """What an official found, kept with the resident (the last one is the current state)."""

    __tablename__ = "resident_findings"
    __table_args__ = (Index("ix_resident_findings_resident_at", "resident_id", "at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    official_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finding: Mapped[Finding] = enum_column(Finding)
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
