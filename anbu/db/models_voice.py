"""How a resident's call sounds (accessibility, ``anbu.domain.voice``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from anbu.db.base import Base, UtcDateTime
from anbu.db.models import utcnow


class ResidentVoice(Base):
    """A resident's voice profile; no row = the defaults (as rendered, two asks)."""

    __tablename__ = "resident_voice"

    resident_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    gain_db: Mapped[float] = mapped_column(Float, default=0.0)
    tempo: Mapped[float] = mapped_column(Float, default=1.0)
    extra_repeats: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
