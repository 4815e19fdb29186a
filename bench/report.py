"""Report benchmark: a year of a 100,000-resident district reported (PostgreSQL), aim < 10 s.

The district is seeded straight into the tables by COPY (a year of a busy district, see
``VOLUMES``; raw signal events only for the last 90 days, as retention keeps them), ANALYZEd as
autovacuum would, then ``anbu.report.build_report`` runs for the whole year. Figures
(bench/results/report.json): ``report_s_100000`` (the first run), a second run, and the time
to render each export from the figures.

    python -m bench.report [--residents 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import random
import time
from typing import Any

import asyncpg

from anbu.db.migrate import upgrade
from anbu.db.session import make_engine, make_sessionmaker
from anbu.report import Period, build_report
from anbu.report.render import render
from bench.common import peak_rss_mb, write_results
from tests.db_fixtures import PG_ADMIN_DSN as PG_ADMIN
from tests.db_fixtures import create_pg_database, drop_pg_database, pg_url

YEAR = Period(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
_DONG_NAMES = "보라 청룡 은천 성현 중앙 인헌 남현 서원 신원 서림 신사 난향 조원 대학 삼성 미성 난곡"
DONGS = [f"{name}동" for name in _DONG_NAMES.split()]
# Per 100,000 residents for the year.
VOLUMES = {
    "signal_events": 2_000_000,
    "checkins": 150_000,
    "risk_assessments": 250_000,
    "incidents": 15_000,
    "device_tasks": 10_000,
}
KST = dt.timezone(dt.timedelta(hours=9))
T0 = YEAR.start


_ids = itertools.count(1)


def _id() -> str:
    return f"{next(_ids):032x}"  # as long as a uuid hex, cheaper to make


def _when(rng: random.Random, lo: dt.datetime = T0, span_days: float = 365) -> dt.datetime:
    return lo + dt.timedelta(seconds=rng.uniform(0, span_days * 86400 - 1))


async def seed(dsn: str, n: int, seed_: int = 11) -> dict[str, int]:
    rng = random.Random(seed_)
    scale = n / 100_000
    conn = await asyncpg.connect(dsn)
    counts: dict[str, int] = {}

    async def copy(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        await conn.copy_records_to_table(table, records=rows, columns=columns)
        counts[table] = counts.get(table, 0) + len(rows)

    try:
        did = await conn.fetchval(
            "INSERT INTO districts (code, name, created_at) VALUES ('11620', '관악구', $1)"
            " RETURNING id",
            T0,
        )
        residents = [_id() for _ in range(n)]
        tiers = [rng.choice(["calls", "calls", "app", "iot", "iot"]) for _ in range(n)]
        await copy(
            "residents",
            ["id", "district_id", "name", "phone", "dong", "active", "created_at", "updated_at"],
            [(r, did, "주민", "01099990001", rng.choice(DONGS), True, T0, T0) for r in residents],
        )
        await copy(
            "monitoring_profiles",
            ["resident_id", "tier", "category", "consent_call_records", "consent_app",
             "consent_iot", "enabled", "level", "created_at", "updated_at"],
            [(r, t, rng.choice(["medium", "high", "low"]), True, t != "calls", t == "iot",
              True, "none", T0, T0) for r, t in zip(residents, tiers, strict=True)],
        )  # fmt: skip
        devices: list[tuple[Any, ...]] = []
        plugs: list[tuple[str, str]] = []
        for r, t in zip(residents, tiers, strict=True):
            if t != "calls":
                devices.append((_id(), f"app-{r}", did, r, "app", 3600, True, True, T0))
            if t == "iot":
                pk = _id()
                devices.append((pk, f"plug-{r}", did, r, "plug", 600, True, True, T0))
                plugs.append((pk, r))
        await copy(
            "devices",
            ["id", "device_id", "district_id", "resident_id", "kind", "expected_interval_s",
             "active", "online", "created_at"],
            devices,
        )  # fmt: skip
        kept_from = YEAR.end - dt.timedelta(days=90)
        sources = [("carrier-cdr", "call_count"), ("app", "steps"), ("plug", "power")]
        batch: list[tuple[Any, ...]] = []
        for i in range(int(VOLUMES["signal_events"] * scale)):
            src, kind = rng.choice(sources)
            at = _when(rng, kept_from, 90)
            batch.append((src, f"e{i}", rng.choice(residents), kind, at, 1.0, at))
            if len(batch) == 200_000:
                await copy(
                    "signal_events",
                    ["source", "event_id", "resident_id", "kind", "at", "value", "received_at"],
                    batch,
                )
                batch = []
        if batch:
            await copy(
                "signal_events",
                ["source", "event_id", "resident_id", "kind", "at", "value", "received_at"],
                batch,
            )

        checkins: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        assessments: list[tuple[Any, ...]] = []
        alerting: list[tuple[str, str, dt.datetime, str]] = []
        channels = ["calls", "steps", "power", "light"]
        for _ in range(int(VOLUMES["checkins"] * scale)):
            cid, rid, at = _id(), rng.choice(residents), _when(rng)
            source = rng.choices(["signal", "routine", "api"], [60, 33, 7])[0]
            outcome = rng.choices(
                ["ok", "unreachable", "no_response", "help", "declined", "invalid_number"],
                [80, 10, 5, 2, 2, 1],
            )[0]
            checkins.append((cid, rid, source, "bench", "completed", outcome, 50, at, at, at))
            tries = 1 if outcome == "ok" and rng.random() < 0.7 else rng.randint(1, 3)
            for k in range(1, tries + 1):
                answered = k == tries and outcome in ("ok", "no_response", "help")
                result, cause = (
                    ("answered", 16) if answered
                    else rng.choice([("no_answer", 19), ("busy", 17), ("unreachable", 20)])
                )  # fmt: skip
                dialed = at + dt.timedelta(minutes=10 * k)
                ended = dialed + dt.timedelta(seconds=40)
                attempts.append((_id(), cid, k, _id(), "01099990001", "finished", result, cause,
                                 "", dialed, dialed, ended))  # fmt: skip
            if source == "signal":
                ch = rng.choice(channels)
                ev = {"channels": [{"channel": ch, "status": rng.choice(["quiet", "low"]),
                                    "severe": rng.random() < 0.2}]}  # fmt: skip
                assessments.append((_id(), rid, "caution", "concern", json.dumps(ev), "", cid, at))
            if outcome != "ok" and len(alerting) < VOLUMES["incidents"] * scale:
                alerting.append((cid, rid, at + dt.timedelta(minutes=40), outcome))
        await copy(
            "checkins",
            ["id", "resident_id", "source", "reason", "status", "outcome", "priority",
             "created_at", "updated_at", "closed_at"],
            checkins,
        )  # fmt: skip
        await copy(
            "call_attempts",
            ["id", "checkin_id", "attempt_no", "channel_id", "number", "status", "result",
             "hangup_cause", "keys", "scheduled_for", "originated_at", "ended_at"],
            attempts,
        )  # fmt: skip
        while len(assessments) < VOLUMES["risk_assessments"] * scale:
            at = _when(rng)
            level, prev = rng.choice([("concern", "none"), ("none", "concern"),
                                      ("none", "caution")])  # fmt: skip
            assessments.append((_id(), rng.choice(residents), level, prev, '{"channels": []}', "",
                                None, at))  # fmt: skip
        await copy(
            "risk_assessments",
            ["id", "resident_id", "level", "previous_level", "evidence", "explanation",
             "checkin_id", "assessed_at"],
            assessments,
        )  # fmt: skip

        incidents: list[tuple[Any, ...]] = []
        messages: list[tuple[Any, ...]] = []
        findings: list[tuple[Any, ...]] = []
        for cid, rid, opened, outcome in alerting:
            iid = _id()
            steps = rng.choices([1, 2, 3], [80, 15, 5])[0]
            msg_ids = []
            for k in range(steps):
                mid = _id()
                created = opened + dt.timedelta(seconds=600 * k + 1)
                sent = created + dt.timedelta(seconds=rng.uniform(0.02, 2))
                delivered = sent + dt.timedelta(seconds=rng.uniform(1, 20))
                messages.append(
                    (mid, _id(), iid, "01055550001", "0212345678", "LMS", "경보", 1, "sent", 1,
                     created, created, sent, "delivered", delivered, "")
                )  # fmt: skip
                msg_ids.append((mid, sent))
            acked = rng.random() < 0.97
            last_sent = msg_ids[-1][1]
            ack_at: dt.datetime | None = (
                last_sent + dt.timedelta(seconds=rng.expovariate(1 / 120)) if acked else None
            )
            finding = (
                rng.choices(["safe", "visited", "false_alarm", "quiet_habit", "hospitalised",
                             "died"], [40, 25, 15, 10, 8, 2])[0]
                if acked and rng.random() < 0.8 else None
            )  # fmt: skip
            incidents.append((iid, cid, rid, did, outcome,
                              "urgent" if outcome == "help" else "normal",
                              "acknowledged" if acked else "exhausted", "1234", _id(), steps,
                              steps, msg_ids[-1][0], opened - dt.timedelta(seconds=2), opened,
                              ack_at, finding, ack_at + dt.timedelta(hours=2)
                              if finding and ack_at else None))  # fmt: skip
            if finding and ack_at:
                findings.append((_id(), rid, iid, finding, "", ack_at + dt.timedelta(hours=2)))
        await copy(
            "incidents",
            ["id", "checkin_id", "resident_id", "district_id", "outcome", "urgency", "status",
             "code", "token", "step_position", "step_count", "current_message_id",
             "case_closed_at", "opened_at", "acknowledged_at", "finding", "finding_at"],
            incidents,
        )  # fmt: skip
        await copy(
            "sms_outbox",
            ["id", "reference", "incident_id", "to", "sender", "kind", "text", "priority",
             "status", "attempts", "next_attempt_at", "created_at", "sent_at", "delivery",
             "delivery_at", "refused_by"],
            messages,
        )  # fmt: skip
        await copy(
            "resident_findings",
            ["id", "resident_id", "incident_id", "finding", "note", "at"],
            findings,
        )
        tasks: list[tuple[Any, ...]] = []
        for _ in range(int(VOLUMES["device_tasks"] * scale)):
            pk, rid = rng.choice(plugs)
            opened = _when(rng)
            fixed = opened + dt.timedelta(hours=rng.expovariate(1 / 30))
            done = rng.random() < 0.9
            tasks.append((_id(), pk, rid, "stale", "resolved" if done else "open", "",
                          opened, fixed if done else None))  # fmt: skip
        await copy(
            "device_tasks",
            ["id", "device_pk", "resident_id", "kind", "status", "detail", "opened_at",
             "resolved_at"],
            tasks,
        )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return counts


async def run(n: int) -> dict[str, Any]:
    name = await create_pg_database()
    engine = make_engine(pg_url(name))
    try:
        await upgrade(engine)
        t0 = time.perf_counter()
        counts = await seed(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", n)  # asyncpg DSN
        seed_s = time.perf_counter() - t0
        sessions = make_sessionmaker(engine)
        runs = []
        fig: dict[str, Any] = {}
        for _ in range(2):
            t0 = time.perf_counter()
            fig = await build_report(sessions, "11620", YEAR, ack_target_s=300)
            runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await build_report(sessions, "11620", YEAR, dong=DONGS[0], ack_target_s=300)
        dong_s = time.perf_counter() - t0
        renders = {}
        for fmt in ("json", "csv", "xlsx", "html"):
            t0 = time.perf_counter()
            data = await render(fig, fmt)
            renders[fmt] = {"s": round(time.perf_counter() - t0, 3), "bytes": len(data)}
    finally:
        await engine.dispose()
        await drop_pg_database(name)
    return {
        f"report_s_{n}": round(runs[0], 2),
        "report_s_second_run": round(runs[1], 2),
        "report_s_one_dong": round(dong_s, 2),
        "aim_s": 10,
        "rows_seeded": counts,
        "seed_s": round(seed_s, 1),
        "render": renders,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        # This machine is shared: the load says how much of its 2 cores the run could have.
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        "sample": {
            "checkins": fig["checkins"]["total"],
            "answer_rate": fig["calls"]["answer_rate"],
            "alerts": fig["alerts"]["alerts"],
            "ack_within_target": fig["alerts"]["ack_within_target"],
            "true_alarm_rate": fig["findings"]["true_alarm_rate"],
        },
    }


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=100_000)
    args = ap.parse_args(argv)
    figures = await run(args.residents)
    write_results("report", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
