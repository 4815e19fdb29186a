"""Outcome feedback: each widening an official's finding made to a person's thresholds."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import enum_column, new_id
from anbu.domain.risk import Channel


class FeedbackStep(Base):
    """One step of widening of one channel of one resident, from one finding. Reverting it (an
    official in the console, or a later true alarm) sets ``reverted_at``; the row stays."""

    __tablename__ = "feedback_steps"
    __table_args__ = (Index("ix_feedback_steps_resident", "resident_id", "reverted_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = enum_column(Channel)
    hours: Mapped[float] = mapped_column(Float)
    finding: Mapped[str] = mapped_column(String(32))
    incident_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    assessment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reverted_why: Mapped[str | None] = mapped_column(String(200), nullable=True)


class RuleFinding(Base):
    """Officials' findings about alerts one rule on one channel raised, per district: how often
    it was a false alarm, how often true. Grading reads it to tighten a lone LOW on a channel
    found to be noise (anbu.domain.feedback.strict_low_channels)."""

    __tablename__ = "rule_findings"

    district_id: Mapped[int] = mapped_column(
        ForeignKey("districts.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = enum_column(Channel, primary_key=True)
    rule: Mapped[str] = mapped_column(String(16), primary_key=True)  # quiet, quiet_long, low
    false_alarms: Mapped[int] = mapped_column(Integer, default=0)
    true_alarms: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
