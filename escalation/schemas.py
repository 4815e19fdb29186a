"""Request and response bodies of the escalation API."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anbu.api.strict import StrictBool, StrictInt
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
from anbu.domain.phone import mask_phone, normalize_mobile

_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def hhmm_to_min(text: str) -> int:
    match = _HHMM.match(text)
    if match is None or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f"time must be HH:MM (00:00-24:00), got {text!r}")
    return (int(match.group(1)) * 60 + int(match.group(2))) % (24 * 60)


def min_to_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class OfficialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    district_code: str = Field(min_length=1, max_length=16)
    dong: str = Field(default="", max_length=50, description='행정동; "" = the whole district')
    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=7, max_length=24, description="mobile number for alerts")
    role: OfficialRole = OfficialRole.DONG

    @field_validator("phone")
    @classmethod
    def _korean_phone(cls, v: str) -> str:
        return normalize_mobile(v)


class OfficialPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dong: str | None = Field(default=None, max_length=50)
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, min_length=7, max_length=24)
    role: OfficialRole | None = None
    active: StrictBool | None = None

    @field_validator("phone")
    @classmethod
    def _korean_phone(cls, v: str | None) -> str | None:
        return None if v is None else normalize_mobile(v)


class OfficialOut(BaseModel):
    id: str
    district_code: str
    dong: str
    name: str
    phone_masked: str
    role: OfficialRole
    active: bool

    @classmethod
    def of(cls, o: object) -> OfficialOut:
        from anbu.db.models_escalation import Official

        assert isinstance(o, Official)
        return cls(
            id=o.id,
            district_code=o.district.code,
            dong=o.dong,
            name=o.name,
            phone_masked=mask_phone(o.phone),
            role=o.role,
            active=o.active,
        )


class DutyIn(BaseModel):
    """On-duty hours in local time (Asia/Seoul). ``end`` <= ``start`` runs past midnight;
    equal (e.g. 00:00-24:00) is the whole day. Days: 0 = Monday ... 6 = Sunday."""

    model_config = ConfigDict(extra="forbid")
    days: list[StrictInt] = Field(default_factory=lambda: list(range(7)), min_length=1)
    start: str = "00:00"
    end: str = "24:00"
    on_holidays: StrictBool = True

    @field_validator("days")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in v):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return sorted(set(v))

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        hhmm_to_min(v)
        return v


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    official_id: str = Field(min_length=1, max_length=32)
    ack_timeout_s: StrictInt | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    duty: DutyIn = Field(default_factory=DutyIn)


class ChainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    district_code: str = Field(min_length=1, max_length=16)
    dong: str = Field(default="", max_length=50, description='"" = every dong without its own')
    steps: list[StepIn] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _distinct(self) -> ChainIn:
        ids = [s.official_id for s in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError("an official appears twice in the chain")
        return self


class StepOut(BaseModel):
    position: int
    official_id: str
    official_name: str
    role: OfficialRole
    ack_timeout_s: int
    duty: DutyIn


class ChainOut(BaseModel):
    id: str
    district_code: str
    dong: str
    steps: list[StepOut]


class IncidentEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: dt.datetime
    kind: IncidentEventKind
    official_id: str | None
    message_id: str | None
    detail: str


class MessageOut(BaseModel):
    id: str
    reference: str
    official_id: str | None
    to_masked: str
    status: OutboxStatus
    attempts: int
    provider: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivery: DeliveryStatus | None
    delivery_at: dt.datetime | None
    last_error: str | None


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    checkin_id: str
    resident_id: str
    outcome: Outcome
    urgency: Urgency
    status: IncidentStatus
    code: str
    step_position: int | None
    step_count: int
    ack_due_at: dt.datetime | None
    case_closed_at: dt.datetime
    opened_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    ack_channel: AckChannel | None
    finding: Finding | None
    finding_note: str | None
    finding_at: dt.datetime | None


class IncidentDetail(IncidentOut):
    events: list[IncidentEventOut]
    messages: list[MessageOut]


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finding: Finding | None = None
    note: str = Field(default="", max_length=2000)
    # A change of a recorded finding must say so: it is stored as an amendment.
    amend: bool = False


class FindingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    incident_id: str
    official_id: str | None
    finding: Finding
    note: str
    at: dt.datetime


class ResidentFindings(BaseModel):
    resident_id: str
    last_finding: FindingOut | None
    items: list[FindingOut]
