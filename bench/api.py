"""The API under load: ``POST /v1/signals`` (batches) and ``POST /v1/checkins`` at 100 and 500
requests/s, on loopback, PostgreSQL.

The API runs as ``anbu serve`` runs it with ``api_workers`` = ``--workers`` (default: one per
core): uvicorn processes on one listening socket (started here as a child process so the load
generator does not share its event loop or its CPU accounting, which sums the API processes),
the app built by the composition root (``anbu.app.build_api``), the request limits lifted for the
bench key (the default 50 req/s per key would answer most of 500 req/s with 429, which is the
limit working, not the API's speed).

The load generator is open-loop and bounded: requests start on a fixed schedule (one every
1/rate s) whether or not earlier ones have finished, at most ``--max-inflight`` at once (a
request that would exceed it is counted as an error, ``dropped``). Latency is from the
scheduled start to the full response, so a server that falls behind shows it (no coordinated
omission). Half the requests are signal batches (``--batch`` call records each, of residents
picked at random, new event ids), half open a check-in for a resident who has none open yet.

Figures (bench/results/api.json): per rate ``api_p50_ms_<rate>rps`` and ``api_p99_ms_<rate>rps``
over both kinds, ``errors_<rate>rps`` (any non-2xx, timeout or dropped), and per endpoint
(``signals_*``, ``checkins_*``); the server's CPU share and the load average. Aim:
``api_p99_ms_500rps`` < 100 with 0 errors.

    python -m bench.api [--rates 100,500] [--seconds 20] [--batch 20] [--residents 30000]
                        [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import sys
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import insert

from anbu.db.migrate import upgrade
from anbu.db.models import Resident
from anbu.db.models_signals import MonitoringProfile
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.risk import RiskCategory, Tier
from anbu.services.admin import create_api_key, ensure_district
from bench.common import percentile, stop_on_sigterm, write_results
from tests.db_fixtures import create_pg_database, drop_pg_database, pg_url
from tests.fixtures_asterisk import free_ports

KEY = "bench-api-key-0123456789"
_JSON = {"content-type": "application/json"}


def _settings(url: str) -> Any:
    from anbu.settings import LimitSettings, LogSettings, Settings

    return Settings(
        database_url=url,
        limits=LimitSettings(per_key_rate=100_000.0, per_key_burst=100_000),
        # No access log line per request (uvicorn writes it at INFO).
        log=LogSettings(level="WARNING"),
    )


def serve(url: str, port: int, workers: int) -> None:
    """The child process: the API alone, as ``anbu serve`` runs it with ``api_workers``: this
    process and ``workers - 1`` API-only processes on one listening socket."""
    import uvicorn

    from anbu.app.parts import build_api, build_container
    from anbu.app.processes import start_api_workers, stop_api_workers

    settings = _settings(url)

    async def main() -> None:
        container = build_container(settings)
        app = build_api(container)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
        )
        sock = config.bind_socket()
        others = start_api_workers(settings, sock, workers - 1)
        try:
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            await stop_api_workers(others)
            await container.aclose()

    asyncio.run(main())


async def _seed(url: str, residents: int) -> list[str]:
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    now = dt.datetime.now(dt.UTC)
    ids = [uuid.uuid4().hex for _ in range(residents)]
    async with sessions() as s:
        district = await ensure_district(s, "11620", "관악구")
        await create_api_key(s, "bench", ["11620"], key=KEY)
        await s.flush()
        for k in range(0, residents, 5000):
            chunk = ids[k : k + 5000]
            await s.execute(
                insert(Resident),
                [
                    {
                        "id": rid,
                        "district_id": district.id,
                        "name": "김안부",
                        "phone": f"010{30000000 + k + i:08d}",
                        "dong": "신림동",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, rid in enumerate(chunk)
                ],
            )
            await s.execute(
                insert(MonitoringProfile),
                [
                    {
                        "resident_id": rid,
                        "tier": Tier.CALLS,
                        "category": RiskCategory.MEDIUM,
                        "consent_call_records": True,
                        "consent_app": False,
                        "consent_iot": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for rid in chunk
                ],
            )
        await s.commit()
    await engine.dispose()
    return ids


class Load:
    """One open-loop run: ``rate`` requests/s for ``seconds``, half signals, half check-ins."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        residents: list[str],
        fresh: list[str],
        batch: int,
        max_inflight: int,
        tag: str,
    ) -> None:
        self.client = client
        self.tag = tag
        self.bodies: list[tuple[str, bytes]] = []
        self.residents = residents
        self.fresh = fresh  # residents without a check-in yet (taken one per request)
        self.batch = batch
        self.max_inflight = max_inflight
        self.rng = random.Random(1)
        self.seq = 0
        self.latencies: dict[str, list[float]] = {"signals": [], "checkins": []}
        self.errors: dict[str, int] = {"signals": 0, "checkins": 0}
        self.statuses: dict[str, int] = {}
        self.dropped = 0
        self.inflight = 0

    def _signals_body(self) -> bytes:
        at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        events = []
        for _ in range(self.batch):
            self.seq += 1
            events.append(
                {
                    "source": "bench-cdr",
                    "event_id": f"{self.tag}-{self.seq}",
                    "kind": "call",
                    "resident_id": self.rng.choice(self.residents),
                    "at": at.isoformat(),
                    "direction": "out",
                    "duration_s": 60.0,
                }
            )
        return json.dumps({"events": events}).encode()

    def prepare(self, n: int) -> None:
        """Every request body made before the clock starts: the generator shares the machine
        with the server, and what it spends per request it takes from it."""
        for i in range(n):
            if i % 2 == 0:
                self.bodies.append(("/v1/signals", self._signals_body()))
            else:
                rid = self.fresh.pop()
                body = json.dumps({"resident_id": rid, "reason": "벤치마크"}).encode()
                self.bodies.append(("/v1/checkins", body))

    async def _one(self, i: int, scheduled: float) -> None:
        path, body = self.bodies[i]
        kind = path.rsplit("/", 1)[1]
        try:
            r = await self.client.post(path, content=body, headers=_JSON)
            ok = 200 <= r.status_code < 300
            self.statuses[str(r.status_code)] = self.statuses.get(str(r.status_code), 0) + 1
        except httpx.HTTPError as exc:
            ok = False
            self.statuses[type(exc).__name__] = self.statuses.get(type(exc).__name__, 0) + 1
        finally:
            self.inflight -= 1
        self.latencies[kind].append((time.perf_counter() - scheduled) * 1000)
        if not ok:
            self.errors[kind] += 1

    async def run(self, rate: float, seconds: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        n = int(rate * seconds)
        self.prepare(n)
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.inflight >= self.max_inflight:
                self.dropped += 1
                continue
            self.inflight += 1
            task = asyncio.create_task(self._one(i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process and its live children (the other API processes)
    have used so far (from /proc)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{p}/task/{p}/children", encoding="ascii") as f:
                todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = await create_pg_database()
    url = pg_url(name)
    server: asyncio.subprocess.Process | None = None
    try:
        residents = await _seed(url, args.residents)
        (port,) = free_ports(1)
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.api",
            "--serve",
            url,
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        )
        base = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=args.max_inflight, max_keepalive_connections=256)
        async with httpx.AsyncClient(
            base_url=base, headers={"X-API-Key": KEY}, timeout=30, limits=limits
        ) as client:
            deadline = time.perf_counter() + 60
            while True:
                try:
                    if (await client.get("/health/live")).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() > deadline or server.returncode is not None:
                    raise RuntimeError("the API did not start")
                await asyncio.sleep(0.2)
            fresh = list(residents)
            random.Random(2).shuffle(fresh)
            # Warm-up (connections, prepared statements), not counted.
            await Load(client, residents, fresh, args.batch, args.max_inflight, "warm").run(50, 2)
            out: dict[str, Any] = {
                "database": "postgresql",
                "residents": args.residents,
                "signal_batch": args.batch,
                "seconds_per_rate": args.seconds,
                "max_inflight": args.max_inflight,
                "api_workers": args.workers,
                "mix": "half POST /v1/signals batches, half POST /v1/checkins",
            }
            for rate in args.rates:
                load = Load(client, residents, fresh, args.batch, args.max_inflight, f"r{rate:g}")
                cpu0, t0 = _cpu_of(server.pid), time.perf_counter()
                load0 = os.getloadavg()[0]
                await load.run(rate, args.seconds)
                wall = time.perf_counter() - t0
                cpu = _cpu_of(server.pid) - cpu0
                every = load.latencies["signals"] + load.latencies["checkins"]
                errors = sum(load.errors.values()) + load.dropped
                tag = f"{rate:g}rps"
                out |= {
                    f"api_p50_ms_{tag}": round(percentile(every, 50), 1),
                    f"api_p99_ms_{tag}": round(percentile(every, 99), 1),
                    f"errors_{tag}": errors,
                    f"requests_{tag}": len(every) + load.dropped,
                    f"achieved_rps_{tag}": round((len(every) + load.dropped) / wall, 1),
                    f"server_cpu_share_{tag}": round(cpu / wall, 3),
                    # What the load on the shared machine does not move: the server's CPU
                    # per request (one core serves 1000 / this many requests a second).
                    f"server_cpu_ms_per_request_{tag}": round(cpu * 1000 / max(1, len(every)), 2),
                    f"load_average_{tag}": round(max(load0, os.getloadavg()[0]), 2),
                    f"statuses_{tag}": load.statuses,
                }
                for kind in ("signals", "checkins"):
                    out |= {
                        f"{kind}_p50_ms_{tag}": round(percentile(load.latencies[kind], 50), 1),
                        f"{kind}_p99_ms_{tag}": round(percentile(load.latencies[kind], 99), 1),
                        f"{kind}_errors_{tag}": load.errors[kind],
                    }
                if load.dropped:
                    out[f"dropped_{tag}"] = load.dropped
                print(tag, {k: v for k, v in out.items() if k.endswith(tag)}, flush=True)
        return out
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), 15)
            except TimeoutError:
                server.kill()
                await server.wait()
        await drop_pg_database(name)


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    ap = argparse.ArgumentParser(prog="python -m bench.api")
    ap.add_argument("--rates", default="100,500", help="requests/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=20, help="events per signal batch")
    ap.add_argument("--residents", type=int, default=30_000)
    ap.add_argument("--max-inflight", type=int, default=500)
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="API processes (anbu's api_workers setting); default: one per core",
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return 0
    args.rates = [float(r) for r in args.rates.split(",")]
    needed = int(sum(args.rates) * args.seconds / 2) + 100
    if args.residents < needed:
        ap.error(f"--residents must be at least {needed} (one fresh resident per check-in)")
    figures = asyncio.run(run(args))
    write_results("api", figures)
    ok = figures.get("errors_500rps", 0) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
