"""The API under load: ``POST /v1/signals`` (batches) and ``POST /v1/checkins`` at 100 and 500
requests/s (and 25, what this shared machine can carry), on loopback, PostgreSQL.

The API runs as ``anbu serve`` runs it with ``api_workers`` = ``--workers`` (default: one per
core): uvicorn processes on one listening socket (started here as a child process so the load
generator does not share its event loop or its CPU accounting, which sums the API processes),
the app built by the composition root (``anbu.app.build_api``), the request limits lifted for the
bench key (the default 50 req/s per key would answer most of 500 req/s with 429, which is the
limit working, not the API's speed).

The load generator is open-loop and bounded, and cheap (it shares the two cores with the server
and PostgreSQL): every request is made as bytes before the clock starts and sent on a
keep-alive HTTP/1.1 connection of its own small client (asyncio streams): ~0.1 ms of CPU per
request, where httpx spent ~4 ms (50 connections, measured side by side): at 500 req/s httpx
alone wanted two cores, the whole machine. Requests start on a fixed schedule (one every 1/rate
s) whether or not earlier ones have finished; at most ``--max-inflight`` are in flight, and a
request that would exceed that is not sent and counted as an error (``not_sent``). Latency is
from the scheduled start to the last byte of the response, so a server that falls behind shows
it (no coordinated omission); how late the generator itself started requests is reported beside
it. Half the requests are signal batches (``--batch`` call records each, of residents picked at
random, new event ids), half open a check-in for a resident who has none open yet.

Figures (bench/results/api.json): per rate ``api_p50_ms_<rate>rps`` and ``api_p99_ms_<rate>rps``
over both kinds, ``errors_<rate>rps`` (any non-2xx, timeout, connection error or not sent) and
``error_kinds_<rate>rps`` (which: a status such as 503 ``busy`` from the server's in-flight
bound, timeout, connection error, not_sent), per endpoint (``signals_*``, ``checkins_*``); the
server's CPU (its processes summed) per request answered and per 2xx, PostgreSQL's (its
backends for this database) per 2xx, the generator's per request, and the load average.
Aim: ``api_p99_ms_500rps`` < 100 with 0 errors.

    python -m bench.api [--rates 25,100,500] [--seconds 20] [--batch 20] [--residents 30000]
                        [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import resource
import signal
import sys
import time
import uuid
from importlib.util import find_spec
from typing import Any

import asyncpg
from sqlalchemy import insert

from anbu.db.migrate import upgrade
from anbu.db.models import Resident
from anbu.db.models_signals import MonitoringProfile
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.risk import RiskCategory, Tier
from anbu.services.admin import create_api_key, ensure_district
from bench.common import percentile, stop_on_sigterm, write_results
from tests.db_fixtures import PG_ADMIN_DSN, create_pg_database, drop_pg_database, pg_url
from tests.fixtures_asterisk import free_ports

KEY = "bench-api-key-0123456789"
KEEP_ALIVE_REUSE_S = 3.0  # under uvicorn's 5 s keep-alive
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

    # The parent stops this child with SIGINT; uvicorn handles it, shuts down, then raises it
    # again once it has (so a plain `anbu serve` ends at once): that is the expected end here,
    # not a failure to print as a traceback.
    with contextlib.suppress(KeyboardInterrupt):
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


class Conn:
    """One keep-alive HTTP/1.1 connection of the generator: a request is bytes made before the
    clock starts, a response is read by its Content-Length (the API always sends one)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.perf_counter()

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request, read its whole response: (status, keep the connection)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, keep = 0, True
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        if length:
            await self.reader.readexactly(length)
        self.idle_since = time.perf_counter()
        return status, keep

    def close(self) -> None:
        self.writer.close()


def _request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


class Load:
    """One open-loop run: ``rate`` requests/s for ``seconds``, half signals, half check-ins.

    Requests start on a fixed schedule whether or not earlier ones have finished, each on an
    idle keep-alive connection (a new one is opened while fewer than ``max_inflight`` exist).
    With ``max_inflight`` requests already in flight a request is not sent and is counted
    (``not_sent``): the bound that keeps the generator from piling up work the server cannot
    take. Latency runs from the scheduled start to the last byte of the response, so time a
    request waited in a queue (the generator's, the kernel's, the server's) is in it."""

    def __init__(
        self,
        port: int,
        residents: list[str],
        fresh: list[str],
        batch: int,
        max_inflight: int,
        tag: str,
        timeout_s: float = 10.0,
    ) -> None:
        self.port = port
        self.tag = tag
        self.timeout_s = timeout_s
        self.requests: list[tuple[str, bytes]] = []
        self.residents = residents
        self.fresh = fresh  # residents without a check-in yet (taken one per request)
        self.batch = batch
        self.max_inflight = max_inflight
        self.rng = random.Random(1)
        self.seq = 0
        self.latencies: dict[str, list[float]] = {"signals": [], "checkins": []}
        self.errors: dict[str, int] = {"signals": 0, "checkins": 0}
        # What each request got: its HTTP status, or how it failed (timeout, connection
        # error), or not_sent (the in-flight bound was reached).
        self.outcomes: dict[str, int] = {}
        self.not_sent = 0
        self.inflight = 0
        self.peak_inflight = 0
        self.idle: list[Conn] = []  # keep-alive connections not in use, last used last
        self.late_ms: list[float] = []  # how late the generator started each request

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
        """Every request made (bytes on the wire) before the clock starts: the generator
        shares the machine with the server, and what it spends per request it takes from it."""
        for i in range(n):
            if i % 2 == 0:
                self.requests.append(("signals", _request("/v1/signals", self._signals_body())))
            else:
                rid = self.fresh.pop()
                body = json.dumps({"resident_id": rid, "reason": "벤치마크"}).encode()
                self.requests.append(("checkins", _request("/v1/checkins", body)))

    def _idle_conn(self) -> Conn | None:
        # uvicorn closes a connection idle for 5 s (timeout_keep_alive): one idle nearly that
        # long may be closing as the request goes out, a failure of the generator's, not the
        # server's. A browser or httpx retries such a request; this one does not reuse it.
        while self.idle:
            conn = self.idle.pop()
            if time.perf_counter() - conn.idle_since < KEEP_ALIVE_REUSE_S:
                return conn
            conn.close()
        return None

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _one(self, i: int, scheduled: float) -> None:
        kind, request = self.requests[i]
        conn: Conn | None = None
        ok = False
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = self._idle_conn() or await Conn.open("127.0.0.1", self.port)
                status, keep = await conn.exchange(request)
            self._count(str(status))
            ok = 200 <= status < 300
            if keep:
                self.idle.append(conn)
                conn = None
        except TimeoutError:
            self._count("timeout")
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            self._count(f"connection error ({type(exc).__name__})")
        finally:
            self.inflight -= 1
            if conn is not None:  # broken or closed by the server: not reused
                conn.close()
        self.latencies[kind].append((time.perf_counter() - scheduled) * 1000)
        if not ok:
            self.errors[kind] += 1

    async def run(self, rate: float, seconds: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        n = int(rate * seconds)
        if len(self.requests) < n:
            self.prepare(n - len(self.requests))
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.late_ms.append(max(0.0, -delay) * 1000)
            if self.inflight >= self.max_inflight:
                self.not_sent += 1
                self._count("not_sent")
                self.errors[self.requests[i][0]] += 1
                continue
            self.inflight += 1
            self.peak_inflight = max(self.peak_inflight, self.inflight)
            task = asyncio.create_task(self._one(i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def _wait_until_up(port: int, server: asyncio.subprocess.Process) -> None:
    deadline = time.perf_counter() + 60
    ask = b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    while True:
        try:
            conn = await Conn.open("127.0.0.1", port)
            try:
                status, _ = await conn.exchange(ask)
            finally:
                conn.close()
            if status < 500:
                return
        except OSError:
            pass
        if time.perf_counter() > deadline or server.returncode is not None:
            raise RuntimeError("the API did not start")
        await asyncio.sleep(0.2)


def _own_cpu() -> float:
    """This process's CPU seconds: the generator's cost, on the cores the server also uses."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _pg_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to ``database`` (the server
    runs on this machine: its share of the two cores is part of the API's cost)."""
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        pids = [
            r["pid"]
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
            )
        ]
    finally:
        await conn.close()
    return {pid: cpu for pid in pids if (cpu := _proc_cpu(pid)) is not None}


def _proc_cpu(pid: int) -> float | None:
    # /proc is not a disk: reading it does not block the loop.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None  # ended meanwhile
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A backend that started during the run counts from zero; one that ended is lost (the
    # pool keeps its connections, so few do).
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


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
        await _wait_until_up(port, server)
        fresh = list(residents)
        random.Random(2).shuffle(fresh)
        # Warm-up (connections, prepared statements, caches), not counted.
        warm = Load(port, residents, fresh, args.batch, args.max_inflight, "warm")
        await warm.run(50, 2)
        warm.close()
        out: dict[str, Any] = {
            "database": "postgresql",
            "residents": args.residents,
            "signal_batch": args.batch,
            "seconds_per_rate": args.seconds,
            "max_inflight": args.max_inflight,
            "api_workers": args.workers,
            "server_max_inflight": _settings(url).limits.max_inflight,
            "server_loop": "uvloop" if find_spec("uvloop") else "asyncio",
            "server_http": "httptools" if find_spec("httptools") else "h11",
            "generator": "asyncio streams, keep-alive HTTP/1.1, requests made before the clock",
            "mix": "half POST /v1/signals batches, half POST /v1/checkins",
        }
        for rate in args.rates:
            tag = f"{rate:g}rps"
            load = Load(port, residents, fresh, args.batch, args.max_inflight, f"r{rate:g}")
            load.prepare(int(rate * args.seconds))
            cpu0, pg0, gen0 = _cpu_of(server.pid), await _pg_cpu(name), _own_cpu()
            load0, t0 = os.getloadavg()[0], time.perf_counter()
            await load.run(rate, args.seconds)
            wall = time.perf_counter() - t0
            cpu = _cpu_of(server.pid) - cpu0
            pg = _pg_delta(pg0, await _pg_cpu(name))
            gen = _own_cpu() - gen0
            load.close()
            every = load.latencies["signals"] + load.latencies["checkins"]
            sent = len(every)
            n = sent + load.not_sent
            answered = sum(v for k, v in load.outcomes.items() if k.isdigit())
            served = sum(v for k, v in load.outcomes.items() if k.startswith("2"))
            out |= {
                f"api_p50_ms_{tag}": round(percentile(every, 50), 1),
                f"api_p99_ms_{tag}": round(percentile(every, 99), 1),
                # Any request that did not get a 2xx: an HTTP error, a timeout, a connection
                # error, or not sent because max_inflight requests were already waiting.
                f"errors_{tag}": sum(load.errors.values()),
                f"error_kinds_{tag}": {
                    k: v for k, v in sorted(load.outcomes.items()) if not k.startswith("2")
                },
                f"statuses_{tag}": dict(sorted(load.outcomes.items())),
                f"requests_{tag}": n,
                f"not_sent_{tag}": load.not_sent,
                f"achieved_rps_{tag}": round(sent / wall, 1),
                f"peak_inflight_{tag}": load.peak_inflight,
                # How late the generator itself started requests (its own loop starved of
                # CPU): counted in the latencies above, shown here so it is not blamed on
                # the server.
                f"generator_late_p99_ms_{tag}": round(percentile(load.late_ms, 99), 1),
                f"generator_cpu_ms_per_request_{tag}": round(gen * 1000 / max(1, n), 3),
                f"server_cpu_share_{tag}": round(cpu / wall, 3),
                # What the load on the shared machine moves least: the server's CPU per
                # request answered (a 503 busy costs little), and per 2xx (everything spent,
                # answers that came too late and refusals included, over what was served).
                f"server_cpu_ms_per_request_{tag}": round(cpu * 1000 / max(1, answered), 2),
                f"server_cpu_ms_per_2xx_{tag}": round(cpu * 1000 / max(1, served), 2),
                f"postgres_cpu_ms_per_2xx_{tag}": round(pg * 1000 / max(1, served), 2),
                f"load_average_{tag}": round(max(load0, os.getloadavg()[0]), 2),
            }
            for kind in ("signals", "checkins"):
                out |= {
                    f"{kind}_p50_ms_{tag}": round(percentile(load.latencies[kind], 50), 1),
                    f"{kind}_p99_ms_{tag}": round(percentile(load.latencies[kind], 99), 1),
                    f"{kind}_errors_{tag}": load.errors[kind],
                }
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
    # 25 req/s: what this shared machine can carry, for the latency of a server not overloaded.
    ap.add_argument("--rates", default="25,100,500", help="requests/s, comma-separated")
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
