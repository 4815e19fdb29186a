"""The processes, each built from settings by the composition root (:mod:`anbu.app.parts`):

- :func:`serve` (``anbu serve``, ``anbu run``): API, dispatcher, scheduler jobs, outbox worker
  and MQTT subscriber in one process (or the API alone with ``--no-telephony``);
- :func:`dispatch_worker` (``python -m scheduler.worker``): claims and dials, nothing else;
- :func:`outbox_worker` (``python -m escalation.worker``): sends the SMS outbox;
- :func:`one_call` (``anbu call``): one test call, no database.

Each waits for its database at start (:func:`anbu.db.outage.wait_for_database`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from anbu.app.parts import (
    Escalation,
    Telephony,
    build_api,
    build_container,
    build_dispatcher,
    build_escalation,
    build_scheduler_service,
    handoff_desk,
    mqtt_subscriber,
    recording_store,
    speech_listener,
    voice_profiles,
    webhook_worker,
)
from anbu.app.parts import (
    outbox_worker as build_outbox_worker,
)
from anbu.container import Container
from anbu.db.outage import wait_for_database
from anbu.domain.phone import mask_phone, normalize_phone
from anbu.ports import CallRequest, SystemClock
from anbu.services.webhooks import WebhookWorker
from anbu.settings import Environment, Settings
from scheduler.dispatcher import Dispatcher
from scheduler.service import SchedulerService

log = logging.getLogger(__name__)


async def _seed_demo(container: Container) -> None:
    """``anbu run`` is the local demo stack: a district to start with and, when no program
    exists yet, a default program that may call at any hour (the production default is
    weekdays 09:00-18:00 Asia/Seoul, which would leave an evening demo silent)."""
    from sqlalchemy import select

    from anbu.db.models_scheduling import Program
    from anbu.services.admin import ensure_district

    async with container.sessions() as s:
        await ensure_district(s, "11620", "관악구")
        if (await s.execute(select(Program.id).limit(1))).first() is None:
            s.add(Program.any_hour("local demo (any hour)"))
            log.info("demo: default program calls at any hour (edit it under /v1/programs)")
        await s.commit()


async def _prepare_database(container: Container) -> None:
    from anbu.db.migrate import upgrade
    from anbu.services.admin import ensure_key

    settings = container.settings
    if settings.database_url.startswith("sqlite"):
        await asyncio.to_thread(settings.cache_dir.mkdir, parents=True, exist_ok=True)
    # Started before (or beside) its database, the process waits rather than exits.
    await wait_for_database(container.engine)
    await upgrade(container.engine)
    key = settings.bootstrap_api_key
    if (
        key is not None
        and key.get_secret_value()
        and settings.environment is not Environment.PRODUCTION
    ):
        async with container.sessions() as s:
            await ensure_key(s, "bootstrap (development)", key.get_secret_value(), admin=True)
            await s.commit()


@dataclass
class Services:
    """What ``anbu serve`` runs, typed: absent parts are None."""

    container: Container
    escalation: Escalation
    telephony: Telephony | None = None
    dispatcher: Dispatcher | None = None
    scheduler: SchedulerService | None = None


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings, *, telephony: bool = True, demo: bool = False
) -> AsyncIterator[Services]:
    """Start database, telephony, escalation and the scheduler; stop them in reverse."""
    container = build_container(settings)
    await _prepare_database(container)
    if demo:
        await _seed_demo(container)
    escalation = build_escalation(container, send=True)
    services = Services(container, escalation)
    mqtt_task: asyncio.Task[None] | None = None
    hooks: WebhookWorker | None = None
    hooks_task: asyncio.Task[None] | None = None
    try:
        assert escalation.runtime is not None
        escalation.runtime.start()
        if settings.webhooks.enabled:
            hooks = webhook_worker(container)
            hooks_task = asyncio.create_task(hooks.run(), name="webhooks")
        if telephony:
            tel = Telephony.build(
                settings,
                container.clock,
                await speech_listener(settings),
                help_desk=handoff_desk(container, escalation.service),
                voice_profiles=voice_profiles(container),
            )
            services.telephony = tel
            await tel.start()
            services.dispatcher = build_dispatcher(container, tel, escalation.service)
            services.scheduler = build_scheduler_service(container, services.dispatcher, escalation)
            await services.scheduler.start()
        if settings.mqtt.enabled:
            mqtt_task = asyncio.create_task(mqtt_subscriber(container).run(), name="mqtt-signals")
        yield services
    finally:
        if mqtt_task is not None:
            mqtt_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mqtt_task
        if hooks is not None and hooks_task is not None:
            hooks.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await hooks_task
            await hooks.aclose()
        if services.scheduler is not None:
            await services.scheduler.stop()
        if services.telephony is not None:
            await services.telephony.stop()
        await escalation.aclose()
        await container.aclose()


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    demo = bool(getattr(args, "demo", False))
    async with running_services(settings, telephony=not args.no_telephony, demo=demo) as svc:
        app = build_api(svc.container, svc.escalation.service)
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log.level.lower(),
            # anbu.logs' root handler (masking) writes uvicorn's lines, the access log too.
            log_config=None,
            lifespan="on",
            # An open console page holds a live stream (/console/events, up to 10 min): on
            # shutdown, wait this long for requests to finish, then close what is left (the
            # browser reconnects to the next process by itself).
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        log.info("API on http://%s:%s (docs at /docs)", settings.api_host, settings.api_port)
        sock = config.bind_socket()
        workers = start_api_workers(settings, sock, settings.api_workers - 1)
        # What start-up built (modules, the app, settings, pools) lives as long as the process:
        # frozen out of the cyclic collector's way, it is not rescanned by every full
        # collection that a big signal batch's allocations trigger (~10% of a batch's time).
        gc.collect()
        gc.freeze()
        try:
            await server.serve(sockets=[sock])
        finally:
            await stop_api_workers(workers)
    return 0


def start_api_workers(settings: Settings, sock: socket.socket, n: int) -> list[BaseProcess]:
    """``n`` API-only processes answering on ``sock`` (already bound and listening) beside
    this one (``settings.api_workers``). Spawned, not forked: a fork would copy this process's
    event loop, database pool and Asterisk connections."""
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    for i in range(n):
        worker = context.Process(
            target=api_worker,
            args=(settings, sock, os.getpid()),
            name=f"anbu-api-{i + 1}",
            daemon=True,
        )
        worker.start()
        workers.append(worker)
    if workers:
        log.info("%d more API process(es) on the same socket", len(workers))
    return workers


def _end_with(parent: int) -> None:
    """SIGTERM this process when ``parent`` ends, however it ends. uvicorn re-raises the
    SIGTERM it handled once it has shut down, which ends ``anbu serve`` at once (no ``finally``
    runs, so :func:`stop_api_workers` does not), and a kill -9 leaves no chance at all: an API
    process left behind would keep answering on the port with nobody dialing."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it ended before the line above
        raise SystemExit(0)


_PR_SET_PDEATHSIG = 1


async def stop_api_workers(workers: list[BaseProcess], timeout_s: float = 10.0) -> None:
    """SIGTERM (uvicorn finishes what it is answering), then wait; kill what is left."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        await asyncio.to_thread(worker.join, timeout_s)
        if worker.is_alive():
            worker.kill()
            await asyncio.to_thread(worker.join)


def api_worker(settings: Settings, sock: socket.socket, parent: int) -> None:
    """One API-only process (see :func:`start_api_workers`): the API over its own container,
    no dialing, no scheduler, no outbox (its SMS wait for the outbox worker's poll)."""
    import uvicorn

    from anbu.logs import configure_logging

    _end_with(parent)
    configure_logging(settings.log.level.upper(), settings.log.format)

    async def main() -> None:
        container = build_container(settings)
        try:
            app = build_api(container)
            config = uvicorn.Config(
                app,
                log_level=settings.log.level.lower(),
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
            gc.collect()
            gc.freeze()
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            await container.aclose()

    asyncio.run(main())


async def _until_signalled(work: asyncio.Task[None]) -> None:
    """Run ``work`` until it ends or SIGTERM/SIGINT arrives; re-raise what it raised."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (work, stopper):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if work in done and not work.cancelled() and work.exception() is not None:
        raise work.exception()  # type: ignore[misc]


async def dispatch_worker(
    settings: Settings, *, agi_address: str | None = None, poll_s: float | None = None
) -> int:
    """Claim and dial due attempts (and reconcile what a crashed worker left behind), with
    the same telephony as ``anbu serve``: AMI keepalive and reconnect tuning, the speech
    listener, the concurrency cap, and the escalation listener (incidents open at once; this
    process's SMS wait in the outbox for the outbox worker). With ``agi_address`` the
    worker's own FastAGI server (``settings.agi_port``) runs its calls' IVR."""
    container = build_container(settings)
    escalation = build_escalation(container, send=False)
    tel: Telephony | None = None
    dispatcher: Dispatcher | None = None
    try:
        await wait_for_database(container.engine)
        tel = Telephony.build(
            settings,
            container.clock,
            await speech_listener(settings) if agi_address else None,
            agi_address=agi_address,
            serve_agi=agi_address is not None,
            help_desk=handoff_desk(container, escalation.service),
            voice_profiles=voice_profiles(container),
        )
        await tel.start()
        if agi_address:
            log.info("FastAGI for this worker's calls on %s", agi_address)
        dispatcher = build_dispatcher(container, tel, escalation.service)
        await dispatcher.start()
        # Tests wait for this line: the worker has registered and reconciled.
        print(f"worker {dispatcher.life.id} ready", flush=True)
        poll = poll_s or settings.scheduling.poll_interval_s
        await _until_signalled(asyncio.create_task(dispatcher.run(poll)))
        return 0
    finally:
        if dispatcher is not None:
            await dispatcher.close()
        if tel is not None:
            await tel.stop()
        await escalation.aclose()
        await container.aclose()


async def outbox_worker(settings: Settings) -> int:
    """Send the SMS outbox until SIGINT/SIGTERM (after the sends in flight finish)."""
    container = build_container(settings)
    worker = build_outbox_worker(container)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    try:
        await wait_for_database(container.engine)
        task = asyncio.create_task(worker.run(), name="sms-outbox")
        print("outbox worker ready", flush=True)
        await task
    finally:
        await worker.aclose()
        await container.aclose()
    return 0


async def prompts_render(settings: Settings, _a: argparse.Namespace) -> int:
    from ivr.tts import render_prompts_command

    report = await asyncio.to_thread(render_prompts_command, settings)
    print(report.summary())
    return 0


async def prompts_upload(settings: Settings, a: argparse.Namespace) -> int:
    """``anbu prompts upload PROMPT FILE [--district CODE | --official ID]``: a recorded
    prompt, normalised; a refused file prints its reason (exit 1). ``--official``: that
    official's own (their greeting, heard by the residents they visit); the official must
    exist (exit 2 otherwise: a recording nobody would ever hear)."""
    from anbu.db.models_escalation import Official
    from anbu.domain.replies import Prompt
    from ivr.recording import RecordingRefusedError

    try:
        prompt = Prompt(a.prompt)
    except ValueError:
        print(f"anbu: no prompt {a.prompt!r} (have: {', '.join(p.value for p in Prompt)})")
        return 2
    official = getattr(a, "official", None)
    if official is not None and a.district is not None:
        print("anbu: give --district or --official, not both")
        return 2
    if official is not None:
        container = build_container(settings)
        try:
            async with container.sessions() as s:
                found = await s.get(Official, official)
        finally:
            await container.aclose()
        if found is None:
            print(f"anbu: no official {official!r}")
            return 2
    store = recording_store(settings)
    try:
        result = await asyncio.to_thread(store.upload, prompt, Path(a.file), a.district, official)
    except RecordingRefusedError as exc:
        print(f"anbu: refused: {exc}")
        return 1
    scope = (
        f"official {official}"
        if official
        else ("district " + a.district if a.district else "default")
    )
    print(
        f"{prompt.value} ({scope}): "
        f"{result.duration_s:.1f} s, {result.source_loudness_lufs:.1f} -> "
        f"{result.loudness_lufs:.1f} LUFS, peak {result.peak_dbfs:.1f} dBFS"
    )
    return 0


async def prompts_sources(settings: Settings, a: argparse.Namespace) -> int:
    """``anbu prompts sources [--district CODE] [--official ID]``: which source each prompt
    plays (for the residents this official visits)."""
    sources = await asyncio.to_thread(
        recording_store(settings).sources, a.district, getattr(a, "official", None)
    )
    for prompt, source in sources.items():
        print(f"{prompt}\t{source}")
    return 0


async def one_call(settings: Settings, a: argparse.Namespace) -> int:
    """One call through the running engine, result printed (no database involved)."""
    number = normalize_phone(a.number)
    # Another anbu (make run) may own the default AGI port: take a free one for this call.
    # The call names it itself (ANBU_AGI, see Telephony.start); the engine's globals, which
    # the running stack's calls rely on, are left alone.
    tel = Telephony.build(settings, SystemClock(), await speech_listener(settings), agi_port=0)
    await tel.start()
    try:
        record = await tel.dialer.call(
            CallRequest(channel_id=uuid.uuid4().hex, number=number, ring_timeout_s=a.ring_timeout)
        )
    finally:
        await tel.stop()
    print(
        f"{mask_phone(number)}: {record.result}"
        + (f", reply {record.reply}" if record.reply else "")
        + (f", keys {record.keys!r}" if record.keys else "")
        + (f", heard {record.transcript!r}" if record.transcript else "")
        + f", cause {record.hangup_cause}"
    )
    return 0
