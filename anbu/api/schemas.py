"""Request and response bodies of the public API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anbu.api.strict import StrictBool, StrictInt, Timestamp
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.phone import mask_phone, normalize_phone
from anbu.domain.replies import Reply


class Problem(BaseModel):
    """Every 4xx/5xx body: what went wrong, in words, and where."""

    error: str
    detail: str
    fields: list[dict[str, str]] | None = None


class DistrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=16, pattern=r"^[0-9A-Za-z_-]+$")
    name: str = Field(min_length=1, max_length=100)


class DistrictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str


class ResidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    district_code: str = Field(min_length=1, max_length=16)
    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=7, max_length=24, description="Korean number, e.g. 010-1234-5678")
    dong: str = Field(default="", max_length=50, description="행정동, e.g. 신림동")
    external_ref: str | None = Field(default=None, max_length=64)

    @field_validator("phone")
    @classmethod
    def _korean_phone(cls, v: str) -> str:
        return normalize_phone(v)  # InvalidPhoneNumberError is a ValueError-like: see app.py


class ResidentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, min_length=7, max_length=24)
    dong: str | None = Field(default=None, max_length=50)
    active: StrictBool | None = None

    @field_validator("phone")
    @classmethod
    def _korean_phone(cls, v: str | None) -> str | None:
        return None if v is None else normalize_phone(v)


class ResidentOut(BaseModel):
    id: str
    district_code: str
    name: str
    phone: str
    phone_masked: str
    dong: str
    external_ref: str | None
    active: bool
    created_at: Timestamp

    @classmethod
    def of(cls, r: object) -> ResidentOut:
        from anbu.db.models import Resident

        assert isinstance(r, Resident)
        return cls(
            id=r.id,
            district_code=r.district.code,
            name=r.name,
            phone=r.phone,
            phone_masked=mask_phone(r.phone),
            dong=r.dong,
            external_ref=r.external_ref,
            active=r.active,
            created_at=r.created_at,
        )


class ResidentPage(BaseModel):
    items: list[ResidentOut]
    next_cursor: str | None


class CheckinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resident_id: str = Field(min_length=1, max_length=32)
    reason: str = Field(min_length=1, max_length=2000, description="why the check-in is opened")
    priority: StrictInt = Field(default=0, ge=0, le=100)


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    attempt_no: int
    channel_id: str
    status: AttemptStatus
    result: CallResult | None
    reply: Reply | None
    hangup_cause: int | None
    sip_status: int | None = None
    keys: str
    transcript: str | None
    confidence: float | None
    scheduled_for: Timestamp
    originated_at: Timestamp | None
    answered_at: Timestamp | None
    ended_at: Timestamp | None


class CheckinOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    resident_id: str
    source: CheckinSource
    reason: str
    status: CheckinStatus
    outcome: Outcome | None
    priority: int
    created_at: Timestamp
    updated_at: Timestamp
    closed_at: Timestamp | None
    attempts: list[AttemptOut]


class CheckinAccepted(BaseModel):
    id: str
    status: CheckinStatus
    joined_existing: bool = Field(description="true when the resident already had an open case")
