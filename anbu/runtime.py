"""Process-level wiring: the commands that run telephony (``anbu serve``, ``anbu run``,
``anbu call``, ``anbu asterisk ...``). Every adapter is built here or in :mod:`anbu.container`,
once, and passed in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from anbu.container import Container, build_container
from anbu.domain.phone import mask_phone, normalize_phone
from anbu.install_secrets import with_local_callback_token
from anbu.ports import CallRequest, Clock
from anbu.risk.mqtt import MqttSignalSubscriber, subscriber_options
from anbu.risk.retention import prune_events
from anbu.risk.sweep import sweep
from anbu.settings import Environment, Settings
from escalation.kannel import KannelConfig, KannelInstance
from escalation.service import EscalationRuntime, build_escalation
from ivr.agi import AgiServer
from ivr.ami import AmiClient, ami_client_from_settings
from ivr.asterisk import AsteriskInstance, provision_carrier, provision_engine
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow, ReplyListener
from ivr.prompts import PromptLibrary
from scheduler.dispatcher import AmiChannelProbe
from scheduler.service import SchedulerService, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class Telephony:
    """The engine side of a call: AMI (dialing, events), FastAGI (the IVR), the dialer."""

    ami: AmiClient
    registry: CallRegistry
    dialer: AmiDialer
    agi: AgiServer

    @classmethod
    def build(
        cls,
        settings: Settings,
        clock: Clock,
        listener: ReplyListener | None = None,
        *,
        agi_port: int | None = None,
    ) -> Telephony:
        """``agi_port=0`` takes a free port (a one-off call beside a running ``anbu run``)."""
        ami = ami_client_from_settings(settings)
        registry = CallRegistry()
        dialer = AmiDialer.from_settings(settings, ami, registry, clock)
        flow = CheckinFlow.from_settings(settings, registry, listener=listener, clock=clock)
        if agi_port is not None:
            settings = settings.model_copy(update={"agi_port": agi_port})
        agi = AgiServer.from_settings(settings, {"checkin": flow})
        return cls(ami, registry, dialer, agi)

    async def start(self, boot_timeout_s: float = 30.0) -> None:
        # AGI first: Asterisk may run the dialplan's AGI() as soon as a call is answered.
        await self.agi.start()
        self.ami.start()
        await self.ami.wait_booted(boot_timeout_s)
        self.dialer.start()

    async def stop(self) -> None:
        await self.dialer.close()
        await self.agi.stop()
        await self.ami.close()


async def _speech_listener(settings: Settings) -> ReplyListener | None:
    """Spoken replies when enabled and the voice extra is installed; keypad always works."""
    if not settings.speech.enabled:
        return None
    from ivr.listen import SpeechListener
    from ivr.speech import SpeechModelError, VoskRecognizer

    try:
        recognizer = await VoskRecognizer.from_settings(settings.speech)
    except SpeechModelError as exc:
        # Keypad-only calls still check on people; say loudly what is missing.
        log.warning("spoken replies off (%s): keypad only", exc)
        return None
    return SpeechListener.from_settings(settings, recognizer)


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
            s.add(
                Program(
                    name="local demo (any hour)",
                    is_default=True,
                    start_min=0,
                    end_min=24 * 60,
                    weekdays="0123456",
                    call_on_holidays=True,
                )
            )
            log.info("demo: default program calls at any hour (edit it under /v1/programs)")
        await s.commit()


async def _prepare_database(container: Container) -> None:
    from anbu.db.migrate import upgrade
    from anbu.services.admin import ensure_key

    settings = container.settings
    if settings.database_url.startswith("sqlite"):
        await asyncio.to_thread(settings.cache_dir.mkdir, parents=True, exist_ok=True)
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


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings, *, telephony: bool = True, demo: bool = False
) -> AsyncIterator[tuple[Container, Telephony | None, SchedulerService | None]]:
    """Start database, telephony, escalation and the scheduler; stop them in reverse."""
    container = build_container(settings)
    await _prepare_database(container)
    if demo:
        await _seed_demo(container)
    tel: Telephony | None = None
    service: SchedulerService | None = None
    escalation: EscalationRuntime | None = None
    mqtt_task: asyncio.Task[None] | None = None
    try:
        escalation = await build_escalation(container)
        if telephony:
            listener = await _speech_listener(settings)
            tel = Telephony.build(settings, container.clock, listener)
            await tel.start()
            service = build_scheduler(
                container,
                dialer=tel.dialer,
                channel_probe=AmiChannelProbe(tel.ami),
                risk_sweep=_risk_sweep(container),
                risk_retention=_risk_retention(container),
                escalation_tick=escalation.tick,
            )
            service.dispatcher.add_listener(escalation.on_checkin_closed)
            await service.start()
            container.extras["health"] = {
                "asterisk": lambda: tel is not None and tel.ami.booted,
            }
        if settings.mqtt.enabled:
            mqtt_task = asyncio.create_task(_mqtt(container).run(), name="mqtt-signals")
        yield container, tel, service
    finally:
        if mqtt_task is not None:
            mqtt_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mqtt_task
        if service is not None:
            await service.stop()
        if tel is not None:
            await tel.stop()
        if escalation is not None:
            await escalation.aclose()
        await container.aclose()


def _mqtt(container: Container) -> MqttSignalSubscriber:
    cfg = container.settings.mqtt

    async def wake(_report: object) -> None:
        container.wake_dispatcher()  # a crisis may have opened a check-in

    return MqttSignalSubscriber(
        container.sessions,
        container.clock,
        **subscriber_options(cfg),
        on_ingested=wake,
        rules=container.settings.risk.rules,
    )


def _risk_sweep(container: Container) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return await sweep(
            container.sessions, container.clock.now(), rules=container.settings.risk.rules
        )

    return run


def _risk_retention(container: Container) -> Callable[[], Awaitable[object]] | None:
    days = container.settings.scheduling.signal_retention_days
    if days is None:
        return None

    async def run() -> object:
        keep = dt.timedelta(days=days)
        return await prune_events(container.sessions, container.clock.now(), keep)

    return run


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from anbu.api.app import create_app

    demo = bool(getattr(args, "demo", False))
    async with running_services(settings, telephony=not args.no_telephony, demo=demo) as (
        container,
        _t,
        _s,
    ):
        app = create_app(container)
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log.level.lower(),
            # anbu.logs' root handler (masking) writes uvicorn's lines, the access log too.
            log_config=None,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        log.info("API on http://%s:%s (docs at /docs)", settings.api_host, settings.api_port)
        # What start-up built (modules, the app, settings, pools) lives as long as the process:
        # frozen out of the cyclic collector's way, it is not rescanned by every full
        # collection that a big signal batch's allocations trigger (~10% of a batch's time).
        gc.collect()
        gc.freeze()
        await server.serve()
    return 0


# --- the local stack (make run) ------------------------------------------------------------------


def _instances(settings: Settings, only: str | None = None) -> list[AsteriskInstance]:
    out: list[AsteriskInstance] = []
    if only in (None, "carrier"):
        out.append(provision_carrier(settings))
    if only in (None, "engine"):
        out.append(provision_engine(settings))
    return out


def _kannel(settings: Settings) -> KannelInstance:
    return KannelInstance(KannelConfig.from_settings(settings, name="kannel"))


async def asterisk_install(settings: Settings, _a: argparse.Namespace) -> int:
    from ivr.asterisk import install_asterisk

    install = await asyncio.to_thread(install_asterisk, settings.cache_dir)
    print(f"Asterisk {install.version} at {install.root}")
    return 0


async def asterisk_up(settings: Settings, a: argparse.Namespace) -> int:
    for inst in await asyncio.to_thread(_instances, settings, a.only):
        await inst.start_async()
        print(f"{inst.name}: running (pid {inst.pid}, SIP {inst.sip_port}, AMI {inst.ami_port})")
    return 0


async def asterisk_down(settings: Settings, a: argparse.Namespace) -> int:
    for inst in await asyncio.to_thread(_instances, settings, a.only):
        await inst.stop_async()
        print(f"{inst.name}: stopped")
    return 0


async def asterisk_status(settings: Settings, a: argparse.Namespace) -> int:
    rc = 0
    for inst in await asyncio.to_thread(_instances, settings, a.only):
        status = await inst.status_async()
        print(f"{inst.name}: {status} (log {inst.log_path})")
        rc = rc or (0 if str(status) == "running" else 1)
    return rc


async def stack_down(settings: Settings, _a: argparse.Namespace) -> int:
    for inst in await asyncio.to_thread(_instances, settings, None):
        await inst.stop_async()
    await _kannel(settings).stop()
    print("stack stopped")
    return 0


async def prompts_render(settings: Settings, _a: argparse.Namespace) -> int:
    from ivr.tts import render_prompts_command

    report = await asyncio.to_thread(render_prompts_command, settings)
    print(report.summary())
    return 0


async def sim_signals(_settings: Settings, a: argparse.Namespace) -> int:
    from anbu.sim import sim_main

    return await asyncio.to_thread(sim_main, list(a.args))


async def run_stack(settings: Settings, args: argparse.Namespace) -> int:
    """make run: Asterisk engine + carrier stand-in + Kannel + API + scheduler, on SQLite."""
    settings = await asyncio.to_thread(with_local_callback_token, settings)
    missing = await asyncio.to_thread(PromptLibrary(settings.audio_dir).missing)
    if missing:
        await prompts_render(settings, args)
    instances = await asyncio.to_thread(_instances, settings, None)
    kannel = _kannel(settings)
    try:
        for inst in instances:
            await inst.start_async()
            log.info("%s up: SIP %s, AMI %s", inst.name, inst.sip_port, inst.ami_port)
        await kannel.start()
        log.info("Kannel up: sendsms %s", settings.sms.kannel_url)
        args.no_telephony = False
        args.demo = True
        print(
            f"anbu is up: API http://{settings.api_host}:{settings.api_port}/docs "
            f"(dev API key: see ANBU_BOOTSTRAP_API_KEY), "
            f"test call: anbu call 01099990001. Ctrl-C stops everything.",
            flush=True,
        )
        return await serve(settings, args)
    finally:
        with contextlib.suppress(Exception):
            await kannel.stop()
        for inst in reversed(instances):
            with contextlib.suppress(Exception):
                await inst.stop_async()


async def test_call(settings: Settings, a: argparse.Namespace) -> int:
    """One call through the running engine, result printed (no database involved)."""
    number = normalize_phone(a.number)
    from anbu.ports import SystemClock

    # Another anbu (make run) may own the default AGI port: take a free one for this call
    # and point the engine's dialplan at it for the call's duration.
    tel = Telephony.build(settings, SystemClock(), await _speech_listener(settings), agi_port=0)
    await tel.start()
    engine = (await asyncio.to_thread(_instances, settings, "engine"))[0]
    await asyncio.to_thread(engine.set_agi, settings.agi_host, tel.agi.port)
    try:
        record = await tel.dialer.call(
            CallRequest(channel_id=uuid.uuid4().hex, number=number, ring_timeout_s=a.ring_timeout)
        )
    finally:
        await asyncio.to_thread(engine.set_agi, settings.agi_host, settings.agi_port)
        await tel.stop()
    print(
        f"{mask_phone(number)}: {record.result}"
        + (f", reply {record.reply}" if record.reply else "")
        + (f", keys {record.keys!r}" if record.keys else "")
        + (f", heard {record.transcript!r}" if record.transcript else "")
        + f", cause {record.hangup_cause}"
    )
    return 0
