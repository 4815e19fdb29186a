"""The parts every process is made of, each built from settings in one function."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI

from anbu.api.app import create_app
from anbu.console import routes as console_routes
from anbu.container import Container
from anbu.db.session import make_engine, make_sessionmaker
from anbu.ports import Clock, HelpDesk, SmsSender, SystemClock, VoiceProfiles
from anbu.risk.mqtt import MqttSignalSubscriber, subscriber_options
from anbu.risk.retention import prune_events
from anbu.risk.sweep import sweep
from anbu.services.retention import RetentionPolicy, apply_retention
from anbu.services.voice import DbVoiceProfiles
from anbu.services.webhooks import WebhookConfig, WebhookWorker
from anbu.settings import Settings
from escalation import api as escalation_api
from escalation.handoff import HandoffDesk
from escalation.outbox import OutboxConfig, OutboxWorker
from escalation.providers import sender_from_settings
from escalation.service import EscalationConfig, EscalationRuntime, EscalationService
from ivr import recording_api
from ivr.agi import AgiHandler, AgiServer
from ivr.ami import AmiClient, ami_client_from_settings
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow, ReplyListener
from ivr.handoff import AgiTransfer, SpokenText, TransferConfig, WhisperFlow
from ivr.recording import RecordingStore
from scheduler import api as scheduling_api
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from scheduler.service import SchedulerService, build_scheduler

log = logging.getLogger(__name__)

__all__ = [
    "Container",
    "Escalation",
    "Telephony",
    "build_api",
    "build_container",
    "build_dispatcher",
    "build_escalation",
    "build_scheduler_service",
    "handoff_desk",
    "mqtt_subscriber",
    "recording_store",
    "speech_listener",
    "voice_profiles",
    "webhook_worker",
]


def build_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    """The core's part of every process: the database engine and sessions, the clock."""
    engine = make_engine(settings.database_url)
    return Container(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock or SystemClock(),
    )


@dataclass
class Telephony:
    """The engine side of a call: AMI (dialing, events), FastAGI (the IVR), the dialer."""

    ami: AmiClient
    registry: CallRegistry
    dialer: AmiDialer
    # None in a dispatch worker without its own AGI server: the engine's dialplan sends the
    # answered calls to ``anbu serve``'s.
    agi: AgiServer | None
    listener: ReplyListener | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        clock: Clock,
        listener: ReplyListener | None = None,
        *,
        agi_port: int | None = None,
        agi_address: str | None = None,
        serve_agi: bool = True,
        registry: CallRegistry | None = None,
        help_desk: HelpDesk | None = None,
        voice_profiles: VoiceProfiles | None = None,
    ) -> Telephony:
        """``agi_port=0`` takes a free port (a one-off call beside a running ``anbu run``);
        ``agi_address`` names this process's AGI server in every Originate (a dispatch worker
        whose calls' IVR must run here). With ``help_desk`` (and ``handoff.enabled``) a
        resident who asks for help is connected to an official (``ivr.handoff``); with
        ``voice_profiles`` each resident's calls sound as their profile says."""
        ami = ami_client_from_settings(settings)
        registry = registry if registry is not None else CallRegistry()
        dialer = AmiDialer.from_settings(settings, ami, registry, clock, agi_address=agi_address)
        flow = CheckinFlow.from_settings(settings, registry, listener=listener, clock=clock)
        if voice_profiles is not None:
            flow.profiles = voice_profiles
        # The official's leg hears the whisper through the same listener: an official's
        # voicemail is detected like a resident's.
        whispers = WhisperFlow(listener)
        if help_desk is not None and settings.handoff.enabled:
            flow.transfer = AgiTransfer(
                help_desk,
                dialer,
                whispers,
                SpokenText(settings.var_dir / "handoff"),
                TransferConfig.from_settings(settings),
            )
        if agi_port is not None:
            settings = settings.model_copy(update={"agi_port": agi_port})
        routes: dict[str, AgiHandler] = {"checkin": flow, "whisper": whispers}
        agi = AgiServer.from_settings(settings, routes) if serve_agi else None
        return cls(ami, registry, dialer, agi, listener)

    async def start(self, boot_timeout_s: float = 30.0) -> None:
        # AGI first: Asterisk may run the dialplan's AGI() as soon as a call is answered.
        if self.agi is not None:
            await self.agi.start()
            # Every call this process places names this process's FastAGI server (ANBU_AGI),
            # so no process re-points the engine's globals and takes another's IVR results
            # (`anbu call` beside `anbu run` took the stack's calls). A bind-all address names
            # no host the engine could reach: those calls keep the engine's globals.
            if self.dialer.agi_address is None and self.agi.host not in ("", "0.0.0.0", "::"):
                host = f"[{self.agi.host}]" if ":" in self.agi.host else self.agi.host
                self.dialer.agi_address = f"{host}:{self.agi.port}"
        self.ami.start()
        await self.ami.wait_booted(boot_timeout_s)
        self.dialer.start()

    async def stop(self) -> None:
        await self.dialer.close()
        if self.agi is not None:
            await self.agi.stop()
        await self.ami.close()
        stop = getattr(self.listener, "stop", None)  # the AudioSocket server of barge-in
        if stop is not None:
            await stop()


async def speech_listener(settings: Settings) -> ReplyListener | None:
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
    listener = SpeechListener.from_settings(settings, recognizer)
    if not settings.speech.barge_in:
        return listener
    from ivr.stream import StreamListener

    return StreamListener.from_settings(settings, recognizer, fallback=listener)


def senders(settings: Settings) -> list[SmsSender]:
    """The configured provider, then ``sms.fallback_provider`` if set."""
    out = [sender_from_settings(settings)]
    fallback = settings.sms.fallback_provider
    if fallback and fallback.strip().lower() != out[0].name:
        out.append(sender_from_settings(settings, fallback))
    return out


def outbox_worker(container: Container) -> OutboxWorker:
    return OutboxWorker(
        container.sessions,
        senders(container.settings),
        config=OutboxConfig.from_settings(container.settings),
        clock=container.clock,
    )


@dataclass
class Escalation:
    """Escalation in one process: the service (opens incidents, takes acknowledgements) and,
    when this process sends SMS itself, the outbox worker with the timers' tick."""

    service: EscalationService
    runtime: EscalationRuntime | None = None

    async def aclose(self) -> None:
        if self.runtime is not None:
            await self.runtime.aclose()


def build_escalation(container: Container, *, send: bool) -> Escalation:
    """With ``send`` the outbox worker runs here (call ``runtime.start()``) and wakes on every
    enqueue; without it the SMS wait in the outbox for a worker process's next poll."""
    settings = container.settings
    worker = outbox_worker(container) if send else None
    service = EscalationService(
        container.sessions,
        EscalationConfig.from_settings(settings),
        clock=container.clock,
        wake=worker.wake if worker is not None else None,
    )
    if worker is None:
        return Escalation(service)
    hour, _, minute = settings.escalation.digest_time.partition(":")
    runtime = EscalationRuntime(
        service, worker, container.clock, dt.time(int(hour), int(minute or 0))
    )
    return Escalation(service, runtime)


def handoff_desk(container: Container, escalation: EscalationService) -> HelpDesk:
    """The escalation side of a person on the line (``escalation.handoff``)."""
    h = container.settings.handoff
    # The acknowledgement clock while a transfer runs: a crashed process's transfer is paged
    # by the tick after this (several officials' rings and accept windows).
    budget = dt.timedelta(seconds=max(120.0, 4 * (h.ring_timeout_s + h.accept_timeout_s) + 30))
    return HandoffDesk(container.sessions, escalation, budget=budget, clock=container.clock)


def voice_profiles(container: Container) -> VoiceProfiles:
    """Each resident's voice profile, read by the IVR at call time."""
    return DbVoiceProfiles(container.sessions)


def recording_store(settings: Settings) -> RecordingStore:
    """Recorded prompts (``<var_dir>/recordings``): the API uploads, the IVR plays them."""
    return RecordingStore(settings.var_dir / "recordings")


def build_api(container: Container, escalation: EscalationService | None = None) -> FastAPI:
    """The HTTP API with every router mounted; ``escalation`` is this process's service (a
    plain one, whose SMS a worker sends, when not given)."""
    app = create_app(
        container,
        routers=[scheduling_api.router, escalation_api.router, recording_api.router],
    )
    store = recording_store(container.settings)
    app.dependency_overrides[recording_api.get_store] = lambda: store
    service = escalation or build_escalation(container, send=False).service
    app.dependency_overrides[escalation_api.get_escalation] = lambda: service
    # The officials' console (anbu.console): acknowledges through this same service.
    app.state.console_escalation = service
    app.include_router(console_routes.router)
    return app


def build_dispatcher(
    container: Container, telephony: Telephony, escalation: EscalationService
) -> Dispatcher:
    """The dispatcher of ``anbu serve`` and of every dispatch worker: dials through this
    process's engine and opens incidents as soon as a case closes."""
    dispatcher = Dispatcher.from_settings(
        container.settings,
        container.engine,
        container.sessions,
        telephony.dialer,
        container.clock,
        channel_probe=AmiChannelProbe(telephony.ami),
    )
    dispatcher.add_listener(escalation.on_checkin_closed)
    container.dispatcher = dispatcher
    container.readiness["asterisk"] = lambda: telephony.ami.booted
    return dispatcher


Hook = Callable[[], Awaitable[object]]


def build_scheduler_service(
    container: Container, dispatcher: Dispatcher, escalation: Escalation
) -> SchedulerService:
    """The periodic jobs of the one process per database that runs them (``anbu serve``)."""
    settings = container.settings

    async def risk_sweep() -> object:
        return await sweep(container.sessions, container.clock.now(), rules=settings.risk.rules)

    retention: Hook | None = None
    days = settings.scheduling.signal_retention_days
    if days is not None:
        keep = dt.timedelta(days=days)

        async def prune() -> object:
            return await prune_events(container.sessions, container.clock.now(), keep)

        retention = prune

    records = RetentionPolicy.from_settings(settings)

    async def record_retention() -> object:
        return await apply_retention(container.sessions, container.clock.now(), records)

    return build_scheduler(
        container,
        dispatcher,
        risk_sweep=risk_sweep,
        risk_retention=retention,
        record_retention=record_retention,
        escalation_tick=escalation.runtime.tick if escalation.runtime is not None else None,
    )


def webhook_worker(container: Container) -> WebhookWorker:
    """Delivers the outcome webhooks' durable outbox (one per process that runs jobs)."""
    return WebhookWorker(
        container.sessions,
        config=WebhookConfig.from_settings(container.settings),
        clock=container.clock,
    )


def mqtt_subscriber(container: Container) -> MqttSignalSubscriber:
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
