"""The officials' console: accounts and their server-side sessions.

Only hashes are stored: the password's (argon2id), the session cookie's and the invitation
link's (SHA-256). A copy of the database logs nobody in and opens no invitation.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import District, Resident, enum_column, new_id, utcnow
from anbu.domain.console import ConsoleRole


class ConsoleAccount(Base):
    __tablename__ = "console_accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[ConsoleRole] = enum_column(ConsoleRole)
    # None only for analysts (every district); officials and district admins have one.
    district_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"), nullable=True)
    dong: Mapped[str] = mapped_column(String(50), default="")  # "" = the whole district
    # The escalation directory's official this account is (acknowledgements are theirs).
    official_id: Mapped[str | None] = mapped_column(ForeignKey("officials.id"), nullable=True)
    # None until the invitation is accepted (an invited account cannot log in yet).
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    invite_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    invite_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    district: Mapped[District | None] = relationship(lazy="joined")


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    # SHA-256 of the cookie's token.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("console_accounts.id", ondelete="CASCADE"), index=True
    )
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    client: Mapped[str] = mapped_column(String(64), default="")
    account: Mapped[ConsoleAccount] = relationship(lazy="joined")


# The console's resident list, by name within a district (100,000 residents: no sort per page).
Index("ix_residents_district_name", Resident.district_id, Resident.name, Resident.id)
