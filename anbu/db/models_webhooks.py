"""Outcome webhooks to the integrating system: the durable outbox of events to POST.

One row per (event, subscribed key), stored in the same transaction as the change it reports
(a check-in closing, an incident step, an acknowledgement), so a crash loses nothing; the body
is frozen at that moment, so every retry sends the same bytes and the same signature input.
Status moves pending -> sending -> delivered (or failed, or cancelled when the key is revoked
or its webhook removed) by compare-and-set, like the SMS outbox.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import enum_column, new_id


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # still refused after webhooks.give_up_h
    CANCELLED = "cancelled"  # the key was revoked or its webhook removed


class WebhookDelivery(Base):
    __tablename__ = "webhook_outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "api_key_id"),
        Index("ix_webhook_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The idempotency id: the same on every retry (the X-Anbu-Event-Id header, the body's id).
    event_id: Mapped[str] = mapped_column(String(32))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryState] = enum_column(DeliveryState, default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
