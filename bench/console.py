"""Console benchmark: server time of the 오늘, 사건 and 대상자 pages with 100,000 residents
and 1,000 open incidents in one district (PostgreSQL), aim p95 < 200 ms each.

The district is seeded straight into the tables (residents with profiles, a check-in with
three unanswered calls, an incident and its SMS for 1,000 of them); then each page is asked
for ``--samples`` times through the whole app in-process (httpx's ASGI transport: routing,
middleware, session check, queries, the access log's rows, rendering), logged in as the
district's official. Figures (bench/results/console.json): ``today_p95_ms``,
``incident_p95_ms``, ``residents_p95_ms`` (plus medians, the residents list searched and
filtered by dong, open case and device status: ``residents_filtered_p95_ms``).

    python -m bench.console [--residents 100000] [--incidents 1000] [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import re
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import insert, text

from anbu.app.parts import build_api, build_container
from anbu.console import accounts
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin, Resident
from anbu.db.models_escalation import Incident, Official, OutboxMessage
from anbu.db.models_signals import MonitoringProfile
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.console import ConsoleRole
from anbu.domain.escalation import Urgency
from anbu.domain.incidents import IncidentStatus, OfficialRole, OutboxStatus
from anbu.domain.risk import Level
from anbu.domain.sms_text import SmsKind
from anbu.services.admin import ensure_district
from anbu.settings import LimitSettings, Settings
from bench.common import percentile, write_results
from tests.db_fixtures import create_pg_database, drop_pg_database, pg_url

NOW = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 10:00 in Seoul
DONGS = [f"{n}동" for n in ("보라", "청룡", "은천", "성현", "중앙", "인헌", "남현", "서원", "신원")]
SURNAMES = "김이박최정강조윤장임"
PASSWORD = "bench-password-1"


class FixedClock:
    def now(self) -> dt.datetime:
        return NOW


def _id() -> str:
    return uuid.uuid4().hex


async def seed(url: str, residents: int, incidents: int) -> list[str]:
    rng = random.Random(13)
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        district = await ensure_district(s, "11620", "관악구")
        official = Official(
            district_id=district.id, name="김담당", phone="01099990001", role=OfficialRole.DONG
        )
        s.add(official)
        await s.flush()
        official_id, district_id = official.id, district.id
        await s.commit()
    rows = [
        {
            "id": _id(),
            "district_id": district_id,
            "name": rng.choice(SURNAMES)
            + "".join(rng.choice("민서준지현우영수") for _ in range(2)),
            "phone": f"010{rng.randrange(10**8):08d}",
            "dong": rng.choice(DONGS),
            "active": True,
            "created_at": NOW,
            "updated_at": NOW,
        }
        for _ in range(residents)
    ]
    levels = [Level.NONE, Level.NONE, Level.NONE, Level.CONCERN, Level.CAUTION, Level.SERIOUS]
    async with engine.begin() as conn:
        for i in range(0, residents, 5000):
            chunk = rows[i : i + 5000]
            await conn.execute(insert(Resident), chunk)
            await conn.execute(
                insert(MonitoringProfile),
                [
                    {"resident_id": r["id"], "level": rng.choice(levels), "created_at": NOW,
                     "updated_at": NOW}
                    for r in chunk
                ],
            )  # fmt: skip
        incident_ids = []
        checkins, attempts, incs, sms = [], [], [], []
        for n, r in enumerate(rng.sample(rows, incidents)):
            checkin_id, incident_id = _id(), _id()
            opened = NOW - dt.timedelta(minutes=rng.uniform(1, 600))
            checkins.append(
                {"id": checkin_id, "resident_id": r["id"], "source": CheckinSource.SIGNAL,
                 "reason": "전화 기록 52시간 없음", "status": CheckinStatus.EXHAUSTED,
                 "outcome": Outcome.UNREACHABLE, "priority": 0, "created_at": opened,
                 "updated_at": opened, "closed_at": opened}
            )  # fmt: skip
            for k in range(3):
                at = opened - dt.timedelta(minutes=3 - k)
                attempts.append(
                    {"id": _id(), "checkin_id": checkin_id, "attempt_no": k + 1,
                     "channel_id": _id(), "number": r["phone"], "status": AttemptStatus.FINISHED,
                     "result": CallResult.NO_ANSWER, "hangup_cause": 19, "keys": "",
                     "scheduled_for": at, "originated_at": at, "ended_at": at}
                )  # fmt: skip
            incs.append(
                {"id": incident_id, "checkin_id": checkin_id, "resident_id": r["id"],
                 "district_id": district_id, "outcome": Outcome.UNREACHABLE,
                 "urgency": Urgency.URGENT if n % 10 == 0 else Urgency.NORMAL,
                 "status": IncidentStatus.OPEN, "code": f"{n:06d}", "step_position": 1,
                 "step_count": 1, "ack_due_at": opened + dt.timedelta(minutes=10),
                 "case_closed_at": opened, "opened_at": opened, "sms_failures": 0}
            )  # fmt: skip
            sms.append(
                {"id": _id(), "reference": f"inc{incident_id}.1", "incident_id": incident_id,
                 "official_id": official_id, "to": "01099990001", "sender": "0212345678",
                 "kind": SmsKind.LMS, "text": "[안부]", "priority": 0,
                 "status": OutboxStatus.SENT, "attempts": 1, "next_attempt_at": opened,
                 "created_at": opened, "sent_at": opened}
            )  # fmt: skip
            incident_ids.append(incident_id)
        await conn.execute(insert(Checkin), checkins)
        await conn.execute(insert(CallAttempt), attempts)
        await conn.execute(insert(Incident), incs)
        await conn.execute(insert(OutboxMessage), sms)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    async with sessions() as s:
        await accounts.create_account(
            s, login="bench", name="김주무관", role=ConsoleRole.OFFICIAL, password=PASSWORD,
            district_code="11620", now=NOW,
        )  # fmt: skip
        await s.commit()
    await engine.dispose()
    return incident_ids


async def measure(
    url: str, incident_ids: list[str], samples: int, profile: str = ""
) -> dict[str, Any]:
    # The console's per-address limit (10 requests/s) would answer 429 to a benchmark that
    # asks as fast as the pages are served: it measures the pages, not the limiter.
    limits = LimitSettings(other_rate=10_000.0, other_burst=100_000)
    container = build_container(Settings(database_url=url, limits=limits), clock=FixedClock())
    app = build_api(container)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    rng = random.Random(7)
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
        page = await client.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        r = await client.post(
            "/console/login",
            data={"csrf": csrf.group(1), "login": "bench", "password": PASSWORD},
        )
        assert r.status_code == 303, r.text

        async def timed(name: str, paths: list[str]) -> None:
            await client.get(paths[0])  # warm the caches once
            if profile == name:  # --profile NAME: where one page's time goes (pyinstrument)
                from pyinstrument import Profiler

                with Profiler(async_mode="enabled") as profiler:
                    for path in paths[:20]:
                        await client.get(path)
                print(profiler.output_text(unicode=True, color=False, show_all=False))
            ms = []
            for path in paths:
                t = time.perf_counter()
                resp = await client.get(path)
                ms.append((time.perf_counter() - t) * 1000)
                assert resp.status_code == 200, (path, resp.status_code)
            figures[f"{name}_p95_ms"] = round(percentile(ms, 95), 1)
            figures[f"{name}_p50_ms"] = round(percentile(ms, 50), 1)

        await timed("today", ["/console"] * samples)
        await timed(
            "incident", [f"/console/incidents/{rng.choice(incident_ids)}" for _ in range(samples)]
        )
        await timed(
            "residents",
            [f"/console/residents?page={rng.randrange(1, 200)}" for _ in range(samples)],
        )
        await timed(
            "residents_search",
            [f"/console/residents?q={rng.choice(DONGS)}&level=serious" for _ in range(samples)],
        )
        # The list's other filters: a dong's open cases, and a device status no one has (a
        # walk through the whole district that finds nobody: the slow case).
        filtered = [
            f"/console/residents?dong={rng.choice(DONGS)}&case=open",
            "/console/residents?device=stale",
            f"/console/residents?case=none&page={rng.randrange(1, 50)}",
        ]
        await timed("residents_filtered", [filtered[i % 3] for i in range(samples)])
    await container.aclose()
    return figures


async def run(residents: int, incidents: int, samples: int, profile: str = "") -> int:
    name = await create_pg_database()
    url = pg_url(name)
    try:
        t = time.perf_counter()
        ids = await seed(url, residents, incidents)
        seed_s = time.perf_counter() - t
        figures = await measure(url, ids, samples, profile)
    finally:
        await drop_pg_database(name)
    ok = all(figures[f"{p}_p95_ms"] < 200 for p in ("today", "incident", "residents"))
    write_results(
        "console",
        {
            "database": "postgresql",
            "residents": residents,
            "open_incidents": incidents,
            "samples": samples,
            "seed_s": round(seed_s, 1),
            **figures,
            "target_p95_ms": 200,
            "meets_target": ok,
        },
    )
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console")
    p.add_argument("--residents", type=int, default=100_000)
    p.add_argument("--incidents", type=int, default=1_000)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--profile", default="", help="print a profile of one page: today, ...")
    a = p.parse_args(argv)
    return asyncio.run(run(a.residents, a.incidents, a.samples, a.profile))


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
