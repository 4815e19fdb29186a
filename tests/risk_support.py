"""Shared by the risk tests: simulated people, their registration, and feeding their events
through the real ingestion service in time-ordered batches, the clock at each batch's end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.domain.risk import DEFAULT_RULES, KST, DeviceKind, HoldReason, RiskCategory, Rules, Tier
from anbu.risk import registry
from anbu.risk.ingest import IngestReport, ingest
from anbu.risk.schemas import SignalEventIn
from devstack.sim import SimResident, Story

START = dt.datetime(2026, 11, 2, tzinfo=KST).astimezone(dt.UTC)
TURN = START + dt.timedelta(days=14)
END = START + dt.timedelta(days=21)


def person(rid: str, story: Story, tier: Tier = Tier.IOT) -> SimResident:
    return SimResident(
        rid,
        story,
        tier,
        calls_per_day=5,
        plug_id=f"plug-{rid}" if tier is Tier.IOT else None,
        app_id=f"app-{rid}" if tier in (Tier.APP, Tier.IOT) else None,
    )


def life_stories() -> list[SimResident]:
    """One of each story on IoT, and a sudden stop on call records only."""
    return [
        person("normal", Story.NORMAL),
        person("stop", Story.SUDDEN_STOP),
        person("unplugged", Story.UNPLUGGED),
        person("travel", Story.TRAVEL),
        person("decline", Story.DECLINE),
        person("callsonly", Story.SUDDEN_STOP, Tier.CALLS),
    ]


async def register(
    sessions: async_sessionmaker[AsyncSession],
    people: list[SimResident],
    *,
    category: Callable[[SimResident], RiskCategory] = lambda _p: RiskCategory.MEDIUM,
    travel_from: Callable[[SimResident], dt.datetime] = lambda _p: TURN,
) -> None:
    """One district; each person a resident with a profile (consent to everything), their
    devices, and for travellers a hold from ``travel_from(p)``."""
    async with sessions() as s:
        district = District(code="11620", name="관악구")
        s.add(district)
        await s.flush()
        for i, p in enumerate(people):
            r = Resident(
                id=p.resident_id,
                district_id=district.id,
                name=f"주민{i}",
                phone=f"0109999{i + 1:04d}",
                dong="신림동",
            )
            s.add(r)
            await s.flush()
            spec = registry.ProfileSpec(p.tier, category(p), None, True, True, True)
            await registry.set_profile(s, r, spec, START)
            for did, kind, interval in (
                (p.plug_id, DeviceKind.PLUG, p.plug_interval_s),
                (p.app_id, DeviceKind.APP, 3600),
            ):
                if did:
                    await registry.register_device(
                        s, r, device_id=did, kind=kind, expected_interval_s=interval, now=START
                    )
            if p.story is Story.TRAVEL:
                starts = travel_from(p)
                await registry.add_hold(
                    s, r, starts_at=starts, ends_at=starts + dt.timedelta(days=p.travel_days),
                    reason=HoldReason.TRAVEL, note="딸네 집", now=START,
                )  # fmt: skip
        await s.commit()


Checker = Callable[[IngestReport, dt.datetime], Awaitable[None]]


async def feed(
    sessions: async_sessionmaker[AsyncSession],
    events: Iterable[dict[str, Any]],
    *,
    step: dt.timedelta,
    until: dt.datetime,
    start: dt.datetime = START,
    after: Checker | None = None,
    rules: Rules = DEFAULT_RULES,
) -> None:
    """Ingest ``events`` in batches of ``step`` from ``start``, each at its batch's end (as a
    live feed arrives), the last at ``until``; ``after(report, now)`` sees every batch."""
    cut = start + step
    batch: list[tuple[int, SignalEventIn]] = []

    async def flush(now: dt.datetime) -> None:
        if not batch:
            return
        async with sessions() as s:
            report = await ingest(s, batch, now=now, rules=rules)
        assert report.errors == []
        if after is not None:
            await after(report, now)
        batch.clear()

    for e in sorted(events, key=lambda e: e["at"]):
        ev = SignalEventIn.model_validate(e)
        while ev.at >= cut:
            await flush(cut)
            cut += step
        batch.append((len(batch), ev))
    await flush(until)
