"""The access log (PIPA): one row per personal record read or changed.

Append-only. No code path updates or deletes a row, except the retention job
(:mod:`anbu.services.retention`) deleting rows past the configured keep. On PostgreSQL a
trigger enforces it (migration ``0006_api_access``): UPDATE and TRUNCATE are refused, and
DELETE only passes in a transaction that declared itself the retention purge
(``SET LOCAL anbu.audit_purge = 'on'``) and only for rows older than 30 days. SQLite refuses
UPDATE by trigger too, but cannot guard DELETE the same way: it has no per-transaction setting
a trigger could read (and a trigger on a main table may not look at temp tables), so there the
rule lives in code - and whoever can write the database file can rewrite anything anyway, which
is why production runs on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import enum_column
from anbu.domain.audit import ActorKind, AuditAction, AuditResource


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_resource", "resource_type", "resource_id", "id"),
        Index("ix_audit_log_actor", "actor_kind", "actor_id", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_kind: Mapped[ActorKind] = enum_column(ActorKind)
    actor_id: Mapped[str] = mapped_column(String(64))  # API key id, official id
    actor_name: Mapped[str] = mapped_column(String(100), default="")
    client: Mapped[str] = mapped_column(String(64), default="")  # the peer's address
    method: Mapped[str] = mapped_column(String(8), default="")
    route: Mapped[str] = mapped_column(String(200), default="")  # the path template
    resource_type: Mapped[AuditResource] = enum_column(AuditResource)
    resource_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[AuditAction] = enum_column(AuditAction)
    district_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # "" for a served request; "refused: <why>" when the request was refused (another
    # district's record, a missing one): probing is worth recording too.
    outcome: Mapped[str] = mapped_column(String(100), default="")
