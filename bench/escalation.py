"""Escalation benchmark through a REAL Kannel (bearerbox + smsbox + fake SMSC).

1. Latency: a case closes after its last failed attempt (``record_attempt`` commits, the
   dispatcher hands the ``CheckinClosed`` event to the listener) -> incident opened, SMS stored
   in the outbox, the worker woken, the SMS sent -> Kannel's sendsms answers "Accepted".
   Measured one case at a time: ``last_attempt_to_gateway_p50_ms`` / ``_p99_ms`` (aim: p99
   under 1 s). Also the time to Kannel's "delivered" report reaching anbu's API.
2. Burst: 1,000 cases closed at once, handed to the listener as the dispatcher would (many
   calls finishing together, ``--listeners`` at a time): ``burst_messages_per_s`` from the
   first event to the gateway accepting the last SMS, and ``burst_delivered_once``: every
   alert reached the fake SMSC exactly once (matched by its unique ack link) and every one
   got a "delivered" report.

Each alert is the real LMS text (~4 UCS-2 parts through Kannel). The outbox runs with its
defaults (batch 50, 8 sends in flight). Writes bench/results/escalation.json.

    python -m bench.escalation [--db postgresql|sqlite] [--cases 200] [--burst 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import functools
import logging
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from sqlalchemy import func, select

from anbu.app.parts import build_api, build_container
from anbu.container import Container
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_escalation import (
    EscalationChain,
    EscalationStep,
    Incident,
    Official,
    OutboxMessage,
)
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.incidents import DeliveryStatus, OfficialRole, OutboxStatus
from anbu.domain.retry import RetryPolicy
from anbu.ports import CallRecord
from anbu.services.checkins import CheckinClosed, claim_attempts, open_checkin, record_attempt
from anbu.settings import Settings, SmsSettings
from bench.common import cpu_seconds, peak_rss_mb, percentile, stop_on_sigterm, write_results
from devstack.kannel import KannelConfig, KannelInstance, KannelPorts
from escalation import dlr
from escalation.http11 import KeepAliveClient
from escalation.outbox import OutboxConfig, OutboxWorker
from escalation.providers import KannelSmsSender
from escalation.service import EscalationConfig, EscalationService
from tests.fixtures_asterisk import free_ports

log = logging.getLogger("bench.escalation")

OUR_NUMBER = "0212345678"
USER, PASSWORD = "bench", "bench-sms-password"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
_TOKEN_RE = re.compile(r"/ack/([A-Za-z0-9_-]+)")


class TimedService(EscalationService):
    """Notes when each message's "delivered" report reaches the API."""

    delivered_at: dict[str, float]

    async def record_delivery(
        self, report: dlr.DeliveryReport, now: dt.datetime | None = None
    ) -> bool:
        found = await super().record_delivery(report, now)
        if report.status is DeliveryStatus.DELIVERED:
            self.delivered_at.setdefault(report.reference, time.perf_counter())
        return found


async def _until(cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.01) -> None:
    deadline = time.perf_counter() + timeout_s
    while True:
        if cond():
            return
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(poll_s)


async def _database(kind: str, tmp: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None
    import asyncpg

    name = f"anbu_bench_esc_{int(time.time())}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def _drop(name: str | None) -> None:
    if name is None:
        return
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _seed(container: Container, residents: int) -> list[str]:
    """One district, one dong chain (primary always on duty), ``residents`` residents."""
    async with container.sessions() as s:
        district = District(code="11620", name="관악구")
        s.add(district)
        await s.flush()
        official = Official(
            district_id=district.id,
            district=district,
            dong="신림동",
            name="주무관",
            phone="01055550001",
            role=OfficialRole.DONG,
        )
        s.add(official)
        await s.flush()
        chain = EscalationChain(district_id=district.id, dong="신림동", steps=[])
        chain.steps.append(EscalationStep(position=1, official_id=official.id, ack_timeout_s=600))
        s.add(chain)
        ids = []
        for i in range(residents):
            r = Resident(
                district_id=district.id,
                district=district,
                name="김안부",
                phone=f"010{20000000 + i:08d}",
                dong="신림동",
            )
            s.add(r)
            await s.flush()
            ids.append(r.id)
        await s.commit()
    return ids


async def _close_one(container: Container, resident_id: str) -> CheckinClosed:
    """A real case: opened, its one attempt dialed and unanswered -> closed (unreachable)."""
    now = container.clock.now()
    policy = RetryPolicy(max_attempts=1)
    async with container.sessions() as s:
        resident = await s.get(Resident, resident_id)
        assert resident is not None
        checkin, _ = await open_checkin(
            s, resident, source=CheckinSource.SIGNAL, reason="전화 기록 52시간 없음", now=now
        )
        await s.flush()
        attempt_id = checkin.attempts[0].id
        await claim_attempts(s, [attempt_id], now)
        record = CallRecord(attempt_id, CallResult.NO_ANSWER, 19, now, None, now)
        closed = await record_attempt(s, attempt_id, record, policy, container.clock.now())
        await s.commit()
    assert closed is not None
    return closed


async def _close_many(container: Container, resident_ids: list[str]) -> list[CheckinClosed]:
    """Bulk-made closed cases for the burst (the calls themselves are not what is measured)."""
    now = container.clock.now()
    events = []
    async with container.sessions() as s:
        for rid in resident_ids:
            c = Checkin(
                resident_id=rid,
                source=CheckinSource.SIGNAL,
                reason="전화 기록 52시간 없음",
                status=CheckinStatus.EXHAUSTED,
                outcome=Outcome.UNREACHABLE,
                created_at=now,
                updated_at=now,
                closed_at=now,
            )
            c.attempts = [
                CallAttempt(
                    attempt_no=1,
                    number="01099990004",
                    status=AttemptStatus.FINISHED,
                    result=CallResult.NO_ANSWER,
                    scheduled_for=now,
                    originated_at=now,
                    ended_at=now,
                )
            ]
            s.add(c)
            await s.flush()
            events.append(
                CheckinClosed(c.id, rid, CheckinStatus.EXHAUSTED, Outcome.UNREACHABLE, now)
            )
        await s.commit()
    return events


async def _bare_burst(url: str, sample: Any, n: int, concurrency: int, client: str) -> float:
    """Seconds for a bare loop to have Kannel accept ``n`` copies of one LMS, posted as
    :class:`KannelSmsSender` posts it (same headers, a delivery-report URL excepted: the bare
    loop gets no reports). ``client``: "ours" (the sender's own keep-alive client, the
    honest floor for the ratio) or "httpx" (what the sender used before, for comparison)."""
    import httpx

    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "X-Kannel-Username": USER,
        "X-Kannel-Password": PASSWORD,
        "X-Kannel-From": sample.sender,
        "X-Kannel-To": sample.to,
        "X-Kannel-Coding": "2",
    }
    body = sample.text.encode()
    queue = iter(range(n))
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    keep_alive = KeepAliveClient(url)
    async with httpx.AsyncClient(timeout=30) as h:

        async def post() -> str:
            if client == "httpx":
                response = await h.post(url, headers=headers, content=body)
                return str(response.text)
            return (await keep_alive.request("POST", target, headers, body, 30)).body.decode()

        async def sender() -> None:
            for _ in queue:
                answer = await post()
                assert answer.startswith("0:"), answer

        try:
            t0 = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            return time.perf_counter() - t0
        finally:
            await keep_alive.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp_dir = tempfile.TemporaryDirectory(prefix="anbu-bench-esc-")
    tmp = Path(tmp_dir.name)
    url, pg_name = await _database(args.db, tmp)
    api_port, admin, smsbox, smsc, inject, sendsms = free_ports(6)
    kannel = KannelInstance(
        KannelConfig(
            name="bench",
            var_dir=tmp,
            mo_url=f"http://127.0.0.1:{api_port}/v1/sms/kannel/inbound",
            sendsms_user=USER,
            sendsms_password=PASSWORD,
            admin_password="bench-admin",
            number=OUR_NUMBER,
            ports=KannelPorts(admin, smsbox, smsc, inject, sendsms),
        )
    )
    settings = Settings(
        database_url=url,
        public_url=f"http://127.0.0.1:{api_port}",
        sms=SmsSettings(sender=OUR_NUMBER),
    )
    container = build_container(settings)
    await upgrade(container.engine)
    await kannel.start()
    sender = KannelSmsSender(
        sendsms_url=kannel.sendsms_url,
        username=USER,
        password=PASSWORD,
        dlr_url=f"http://127.0.0.1:{api_port}/v1/sms/kannel/dlr",
    )
    worker = OutboxWorker(
        container.sessions, [sender], config=OutboxConfig(), clock=container.clock
    )
    accepted_at: dict[str, float] = {}

    def on_sent(ref: str, _at: object) -> None:
        accepted_at.setdefault(ref, time.perf_counter())

    worker.on_sent = on_sent
    service = TimedService(
        container.sessions,
        EscalationConfig.from_settings(settings),
        clock=container.clock,
        wake=worker.wake,
    )
    service.delivered_at = {}
    server = uvicorn.Server(
        uvicorn.Config(
            build_api(container, service),
            host="127.0.0.1",
            port=api_port,
            lifespan="off",
            log_level="warning",
        )
    )
    tasks = [asyncio.create_task(server.serve()), asyncio.create_task(worker.run())]
    await _until(lambda: server.started, 10)
    cpu0 = cpu_seconds()
    try:
        residents = await _seed(container, args.cases + args.burst)

        # 1. latency, one case at a time
        latencies: list[float] = []
        delivered: list[float] = []
        for rid in residents[: args.cases]:
            event = await _close_one(container, rid)
            t0 = time.perf_counter()
            await service.on_checkin_closed(event)  # the dispatcher's notify()
            async with container.sessions() as s:
                incident_id = await s.scalar(
                    select(Incident.id).where(Incident.checkin_id == event.checkin_id)
                )
            ref = f"inc{incident_id}.1"
            await _until(functools.partial(accepted_at.__contains__, ref), 30, 0.0005)
            latencies.append((accepted_at[ref] - t0) * 1000)
            with contextlib.suppress(TimeoutError):
                await _until(functools.partial(service.delivered_at.__contains__, ref), 10, 0.001)
            if ref in service.delivered_at:
                delivered.append((service.delivered_at[ref] - t0) * 1000)
            await asyncio.sleep(0.01)

        # 2. burst
        events = await _close_many(container, residents[args.cases :])
        sem = asyncio.Semaphore(args.listeners)
        before = set(accepted_at)

        async def notify(e: CheckinClosed) -> None:
            async with sem:
                await service.on_checkin_closed(e)

        t_burst = time.perf_counter()
        cpu_burst = cpu_seconds()
        await asyncio.gather(*(notify(e) for e in events))
        t_stored = time.perf_counter()
        deadline = time.perf_counter() + 300
        while len(set(accepted_at) - before) < len(events):
            if time.perf_counter() > deadline:
                raise TimeoutError("burst not accepted in 300 s")
            await asyncio.sleep(0.01)
        burst_refs = set(accepted_at) - before
        t_last = max(accepted_at[r] for r in burst_refs)
        # This process's CPU per alert over the burst (opening, sending, marking sent, the
        # delivery reports that came in meanwhile): the figure the shared machine's load
        # does not move, unlike the rates.
        burst_cpu_ms = (cpu_seconds() - cpu_burst) * 1000 / len(events)
        async with container.sessions() as s:
            tokens = set(
                _TOKEN_RE.findall(
                    "\n".join(
                        (
                            await s.execute(
                                select(OutboxMessage.text).where(
                                    OutboxMessage.reference.in_(burst_refs)
                                )
                            )
                        ).scalars()
                    )
                )
            )
        # Every alert at the fake SMSC exactly once, and every one reported delivered.
        deadline = time.perf_counter() + 120
        while True:
            seen = collections.Counter(
                tok
                for sms in await asyncio.to_thread(kannel.received)
                for tok in _TOKEN_RE.findall(sms.text)
                if tok in tokens
            )
            reports = sum(1 for r in burst_refs if r in service.delivered_at)
            if (len(seen) == len(tokens) and reports == len(burst_refs)) or (
                time.perf_counter() > deadline
            ):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        seen = collections.Counter(
            tok
            for sms in await asyncio.to_thread(kannel.received)
            for tok in _TOKEN_RE.findall(sms.text)
            if tok in tokens
        )
        async with container.sessions() as s:
            sent_rows = await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.reference.in_(burst_refs),
                    OutboxMessage.status == OutboxStatus.SENT,
                )
            )
        once = (
            len(tokens) == len(events)
            and len(seen) == len(tokens)
            and all(n == 1 for n in seen.values())
            and reports == len(events)
            and sent_rows == len(events)
        )
        parts = await asyncio.to_thread(lambda: len(kannel.received()))
        # The bare loop, after the check above (its copies would count as duplicates there):
        # the same LMS posted to the same sendsms as often, as many at once as the outbox
        # sends, through the same kind of client, and nothing else (no database, no reports).
        async with container.sessions() as s:
            sample = (
                await s.execute(
                    select(OutboxMessage.text, OutboxMessage.to, OutboxMessage.sender).where(
                        OutboxMessage.reference.in_(burst_refs)
                    )
                )
            ).first()
        assert sample is not None
        bare_s = await _bare_burst(
            kannel.sendsms_url, sample, len(events), worker.config.concurrency, "ours"
        )
        bare_rate = len(events) / bare_s
        bare_httpx_s = await _bare_burst(
            kannel.sendsms_url, sample, len(events), worker.config.concurrency, "httpx"
        )
        ours_rate = len(events) / (t_last - t_burst)
        return {
            "database": args.db,
            "cases": args.cases,
            "last_attempt_to_gateway_p50_ms": round(percentile(latencies, 50), 1),
            "last_attempt_to_gateway_p99_ms": round(percentile(latencies, 99), 1),
            "last_attempt_to_gateway_max_ms": round(max(latencies), 1),
            "last_attempt_to_delivered_report_p50_ms": round(percentile(delivered, 50), 1),
            "last_attempt_to_delivered_report_p99_ms": round(percentile(delivered, 99), 1),
            "burst_escalations": len(events),
            "burst_listener_concurrency": args.listeners,
            "burst_stored_s": round(t_stored - t_burst, 2),
            "burst_messages_per_s": round(ours_rate, 1),
            "bare_burst_messages_per_s": round(bare_rate, 1),
            "bare_burst_httpx_messages_per_s": round(len(events) / bare_httpx_s, 1),
            "burst_ratio": round(ours_rate / bare_rate, 3),
            "burst_cpu_ms_per_message": round(burst_cpu_ms, 2),
            "burst_delivered_once": once,
            "burst_seen_at_smsc": len(seen),
            "burst_duplicates_at_smsc": sum(n - 1 for n in seen.values()),
            "burst_delivered_reports": reports,
            "sms_kind": "LMS via Kannel, UCS-2 concatenated",
            "messages_at_fake_smsc_total": parts,
            "outbox": {"batch": worker.config.batch, "concurrency": worker.config.concurrency},
            "cpu_s": round(cpu_seconds() - cpu0, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    finally:
        worker.stop()
        server.should_exit = True
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.aclose()
        await container.aclose()
        await kannel.stop(grace_s=2.0)
        await _drop(pg_name)
        tmp_dir.cleanup()


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.escalation")
    parser.add_argument("--db", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--listeners", type=int, default=50, help="listener calls at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    backends = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        args.db = backend
        results[backend] = asyncio.run(run(args))
    main_result = results[backends[0]]
    figures = {
        **main_result,
        "by_database": results,
        "note": "headline figures are the first database listed; see by_database",
    }
    write_results("escalation", figures)
    ok = all(r["burst_delivered_once"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
