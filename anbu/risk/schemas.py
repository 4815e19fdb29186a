"""The wire shape of one signal event (HTTP body item, MQTT payloads translate into it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anbu.api.strict import IsoDatetime, StrictBool, StrictFloat, StrictInt
from anbu.domain.risk import CallDirection, SignalKind

_NEEDS_VALUE = {
    SignalKind.CALL_COUNT,
    SignalKind.POWER,
    SignalKind.LIGHT,
    SignalKind.STEPS,
}


class SignalEventIn(BaseModel):
    """One event. ``(source, event_id)`` identifies it: sending it again changes nothing."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_.:-]+$",
        description="the producing system, e.g. 'skt-cdr', 'plug-cloud', 'mqtt'",
    )
    # NUL cannot be stored in PostgreSQL text: refused here, per item, not by the database.
    event_id: str = Field(
        min_length=1, max_length=128, pattern=r"^[^\x00]+$", description="unique within the source"
    )
    kind: SignalKind
    at: IsoDatetime = Field(description="when it happened (ISO 8601 with offset)")
    device_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00]+$",
        description="registered device (plug, app...)",
    )
    resident_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[^\x00]+$",
        description="for call records (no device)",
    )
    value: StrictFloat | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="power: watts; light: lux; steps: steps; call_count: calls; call: seconds",
    )
    direction: CallDirection | None = Field(default=None, description="call: in or out")
    duration_s: StrictFloat | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="call: talk time"
    )
    interval_s: StrictInt | None = Field(
        default=None, gt=0, le=86_400, description="power: seconds the reading averages"
    )
    period_h: StrictFloat | None = Field(
        default=None, gt=0, le=168, description="call_count: hours counted, ending at `at`"
    )
    online: StrictBool | None = Field(default=None, description="heartbeat: false = going offline")

    @model_validator(mode="after")
    def _fits_kind(self) -> SignalEventIn:
        k = self.kind
        if k.needs_device and self.device_id is None:
            raise ValueError(f"{k.value} events need device_id")
        if not k.needs_device and self.resident_id is None:
            raise ValueError(f"{k.value} events need resident_id")
        if k in _NEEDS_VALUE and self.value is None:
            raise ValueError(f"{k.value} events need value")
        if k is SignalKind.CALL and self.direction is None:
            raise ValueError("call events need direction ('in' or 'out')")
        return self

    def attrs_key(self) -> tuple[Any, ...]:
        """The fields :meth:`attrs` is made of: events with equal keys have equal attrs (a
        batch has few distinct ones, so ingestion builds and serialises each once)."""
        return (self.direction, self.duration_s, self.interval_s, self.period_h, self.online)

    def attrs(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.direction is not None:
            out["direction"] = self.direction.value
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        if self.interval_s is not None:
            out["interval_s"] = self.interval_s
        if self.period_h is not None:
            out["period_h"] = self.period_h
        if self.online is not None:
            out["online"] = self.online
        return out or None
