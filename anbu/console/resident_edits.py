"""A resident's holds and devices, changed from their console page (the API's
``/v1/residents/{id}/holds``, ``/call-holds`` and ``/v1/devices`` do the same).

Holds: 입원 (hospital), 여행·외출 (travel) and 기타 pause the risk rules and stop calls
(monitoring holds, they must end, at most 180 days: the risk registry's rules); 통화 보류 stops
calls only and may run until lifted (call holds). Dates are local days: a hold from the start
of its first day (or now, when no day is given) to the end of its last day. Devices: the risk
registry's registration (ids unique in the district) and retirement (its open tasks resolve).

Every check answers in Korean (:class:`ResidentEditRefusedError`) before anything is stored.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_scheduling import CallHold
from anbu.db.models_signals import Device, MonitoringHold
from anbu.domain.escalation import SEOUL
from anbu.domain.risk import DeviceKind, HoldReason, Rules
from anbu.errors import ConflictError, ValidationError
from anbu.risk import registry

CALL_HOLD = "call"  # the form's value for a call hold (the others are HoldReason values)
MAX_HOLD_DAYS = 180  # the registry's limit for a monitoring hold
MAX_NOTE = 200
_DEVICE_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")  # as the API's DeviceIn
INTERVAL_MIN_MAX = 24 * 60  # expected report interval, minutes


class ResidentEditRefusedError(ValueError):
    """The form cannot be stored; the message is the Korean text the page shows."""


class HoldKind:
    """Which table a hold row is in: the path segment of its end form."""

    MONITORING = "monitoring"
    CALL = "call"


@dataclass(frozen=True, slots=True)
class Changed:
    """What was done: the access log's outcome, and the key of the notice the resident page
    shows after the redirect (:data:`NOTICES`)."""

    outcome: str
    done: str


NOTICES = {
    "hold-added": "보류를 추가했습니다.",
    "call-hold-added": "통화 보류를 추가했습니다.",
    "hold-ended": "보류를 끝냈습니다.",
    "device-added": "기기를 등록했습니다.",
    "device-retired": "기기를 사용 안 함으로 바꿨습니다.",
}


def _day(text: str, what: str) -> dt.date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ResidentEditRefusedError(f"{what} 2026-12-05처럼 쓰세요.") from None


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), SEOUL).astimezone(dt.UTC)


async def add_hold(
    session: AsyncSession, resident: Resident, form: dict[str, str], now: dt.datetime
) -> Changed:
    kind = form.get("kind", "")
    reason: HoldReason | None = None
    if kind != CALL_HOLD:
        try:
            reason = HoldReason(kind)
        except ValueError:
            raise ResidentEditRefusedError("보류 종류를 고르세요.") from None
    first = _day(form.get("starts", ""), "시작일은")
    last = _day(form.get("ends", ""), "끝나는 날은")
    note = form.get("note", "").strip()
    if len(note) > MAX_NOTE:
        raise ResidentEditRefusedError(f"메모는 {MAX_NOTE}자 이하여야 합니다.")
    starts_at = _start_of(first) if first is not None else now
    ends_at = _start_of(last + dt.timedelta(days=1)) if last is not None else None
    if ends_at is None and reason is not None:
        raise ResidentEditRefusedError(
            f"입원·여행 보류는 끝나는 날을 정해야 합니다 (최대 {MAX_HOLD_DAYS}일)."
        )
    if ends_at is not None:
        if ends_at <= starts_at:
            raise ResidentEditRefusedError("끝나는 날은 시작일과 같거나 늦어야 합니다.")
        if ends_at <= now:
            raise ResidentEditRefusedError("이미 지난 기간입니다.")
        if reason is not None and ends_at - starts_at > dt.timedelta(days=MAX_HOLD_DAYS):
            raise ResidentEditRefusedError(f"보류는 {MAX_HOLD_DAYS}일까지 정할 수 있습니다.")
    if reason is None:
        session.add(
            CallHold(
                resident_id=resident.id,
                starts_at=starts_at,
                ends_at=ends_at,
                reason=note or "통화 보류 (관제에서)",
                created_at=now,
            )
        )
        await session.flush()
        return Changed("call hold added", "call-hold-added")
    assert ends_at is not None
    try:
        await registry.add_hold(
            session,
            resident,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason,
            note=note,
            now=now,
        )
    except ValidationError as exc:  # the registry's own limits, after ours
        raise ResidentEditRefusedError(f"저장하지 못했습니다: {exc}") from None
    return Changed(f"hold added: {reason.value}", "hold-added")


async def end_hold(
    session: AsyncSession, resident: Resident, kind: str, hold_id: str, now: dt.datetime
) -> Changed:
    """End a hold now; one that has not started yet is removed (as the API's DELETE)."""
    if kind == HoldKind.MONITORING:
        hold = await session.get(MonitoringHold, hold_id[:32])
        if hold is None or hold.resident_id != resident.id:
            raise ResidentEditRefusedError("보류를 찾을 수 없습니다.")
        await registry.end_hold(session, hold, now)
        await session.flush()
        return Changed("hold ended", "hold-ended")
    if kind == HoldKind.CALL and hold_id.isdecimal() and len(hold_id) < 10:
        call_hold = await session.get(CallHold, int(hold_id))
        if call_hold is not None and call_hold.resident_id == resident.id:
            if call_hold.starts_at >= now:
                await session.delete(call_hold)
            elif call_hold.ends_at is None or call_hold.ends_at > now:
                call_hold.ends_at = now
            await session.flush()
            return Changed("call hold ended", "hold-ended")
    raise ResidentEditRefusedError("보류를 찾을 수 없습니다.")


async def add_device(
    session: AsyncSession,
    resident: Resident,
    form: dict[str, str],
    now: dt.datetime,
    rules: Rules,
) -> Changed:
    device_id = form.get("device_id", "").strip()
    if not _DEVICE_ID.match(device_id):
        raise ResidentEditRefusedError(
            "기기 번호는 영문, 숫자와 _ . : - 로 64자까지 쓰세요 (기기에 적힌 번호)."
        )
    try:
        kind = DeviceKind(form.get("device_kind", ""))
    except ValueError:
        raise ResidentEditRefusedError("기기 종류를 고르세요.") from None
    raw = form.get("interval_min", "").strip() or "10"
    if not raw.isdecimal() or not 1 <= int(raw) <= INTERVAL_MIN_MAX:
        raise ResidentEditRefusedError(
            f"보고 간격(분)은 1에서 {INTERVAL_MIN_MAX} 사이의 숫자여야 합니다."
        )
    try:
        await registry.register_device(
            session,
            resident,
            device_id=device_id,
            kind=kind,
            expected_interval_s=int(raw) * 60,
            now=now,
            rules=rules,
        )
    except ConflictError:
        raise ResidentEditRefusedError(
            f"기기 {device_id}는 이미 우리 구의 다른 대상자나 이 대상자에게 등록되어 있습니다."
        ) from None
    await session.flush()
    return Changed(f"device added: {device_id}"[:100], "device-added")


async def retire_device(
    session: AsyncSession, resident: Resident, device_id: str, now: dt.datetime
) -> Changed:
    """Stop expecting reports from a device (its open tasks resolve); it stays in the list."""
    device = await session.scalar(
        select(Device).where(Device.resident_id == resident.id, Device.device_id == device_id[:64])
    )
    if device is None:
        raise ResidentEditRefusedError("기기를 찾을 수 없습니다.")
    if not device.active:
        raise ResidentEditRefusedError(f"기기 {device.device_id}는 이미 사용하지 않습니다.")
    await registry.deregister_device(session, device, now)
    await session.flush()
    return Changed(f"device retired: {device.device_id}"[:100], "device-retired")
