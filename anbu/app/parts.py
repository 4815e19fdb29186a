"""The parts every process is made of, each built from settings in one function."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI

from anbu.api.app import create_app
from anbu.console import routes as console_routes
from anbu.container import Container
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.calling_hours import zone
from anbu.domain.node_health import NodeFault, node_fault
from anbu.errors import AnbuError
from anbu.ports import Clock, HelpDesk, SmsSender, SystemClock, VoiceProfiles
from anbu.risk.mqtt import MqttSignalSubscriber, subscriber_options
from anbu.risk.retention import prune_events
from anbu.risk.sweep import sweep
from anbu.services.retention import RetentionPolicy, apply_retention
from anbu.services.voice import DbVoiceProfiles
from anbu.services.webhooks import WebhookConfig, WebhookWorker
from anbu.settings import NodeSettings, Settings
from escalation import api as escalation_api
from escalation import directory
from escalation.handoff import HandoffDesk
from escalation.outbox import OutboxConfig, OutboxWorker
from escalation.pager import AdminPager
from escalation.providers import sender_from_settings
from escalation.service import EscalationConfig, EscalationRuntime, EscalationService
from escalation.visitor import ChainVisitors
from ivr import recording_api, recording_console
from ivr.agi import AgiHandler, AgiServer
from ivr.ami import AmiClient, ami_client_from_settings
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow, ReplyListener
from ivr.handoff import AgiTransfer, NodeSlots, SpokenText, TransferConfig, WhisperFlow
from ivr.recording import RecordingStore
from ivr.trunk import TrunkWatch
from scheduler import api as scheduling_api
from scheduler.dispatcher import AmiChannelProbe, Dispatcher, EngineNode
from scheduler.service import SchedulerService, build_scheduler

log = logging.getLogger(__name__)

# After the first engine node is up at start, how long the others may take to join before
# they are reported down (they still join whenever their AMI comes up).
NODE_JOIN_GRACE_S = 2.0

__all__ = [
    "Container",
    "Escalation",
    "NodeLink",
    "Telephony",
    "admin_pager",
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


@contextlib.asynccontextmanager
async def one_off(settings: Settings) -> AsyncIterator[Container]:
    """The container of a one-off command (the CLI's administration commands), closed with its
    pools when the command is done, also when it fails."""
    container = build_container(settings)
    try:
        yield container
    finally:
        await container.aclose()


@dataclass
class NodeLink:
    """One engine node as this process reaches it: its AMI client, the dialer over it and
    its trunk's state as that AMI reports it."""

    settings: NodeSettings
    ami: AmiClient
    dialer: AmiDialer
    trunk: TrunkWatch

    @property
    def name(self) -> str:
        return self.settings.name

    def fault(self) -> NodeFault | None:
        """Why the node may take no calls now (None: it may)."""
        counted = self.settings.trunk_qualify
        return node_fault(
            ami_booted=self.ami.booted, trunk_reachable=self.trunk.reachable if counted else None
        )


@dataclass
class Telephony:
    """The engine side of a call: per engine node AMI (dialing, events) and a dialer; one
    FastAGI server (the IVR) and one call registry for every node."""

    links: list[NodeLink]
    registry: CallRegistry
    # None in a dispatch worker without its own AGI server: the engine's dialplan sends the
    # answered calls to ``anbu serve``'s.
    agi: AgiServer | None
    listener: ReplyListener | None = None

    @property
    def ami(self) -> AmiClient:
        """The first node's AMI (the one engine when no nodes are configured)."""
        return self.links[0].ami

    @property
    def dialer(self) -> AmiDialer:
        return self.links[0].dialer

    @property
    def booted(self) -> bool:
        """At least one node can take calls."""
        return any(link.ami.booted for link in self.links)

    def engine_nodes(self) -> list[EngineNode]:
        """The nodes as the dispatcher uses them (health = AMI booted and trunk reachable)."""
        return [
            EngineNode(
                link.name,
                link.dialer,
                link.settings.max_calls,
                AmiChannelProbe(link.ami),
                fault=link.fault,
            )
            for link in self.links
        ]

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
        registry = registry if registry is not None else CallRegistry()
        links = []
        for node in settings.engine_nodes():
            ami = ami_client_from_settings(settings, node)
            dialer = AmiDialer.from_settings(
                settings, ami, registry, clock, agi_address=agi_address, node=node
            )
            links.append(NodeLink(node, ami, dialer, TrunkWatch(ami, node.trunk)))
        flow = CheckinFlow.from_settings(settings, registry, listener=listener, clock=clock)
        if voice_profiles is not None:
            flow.profiles = voice_profiles
        # The official's leg hears the whisper through the same listener: an official's
        # voicemail is detected like a resident's.
        whispers = WhisperFlow(listener)
        if help_desk is not None and settings.handoff.enabled:
            flow.transfer = AgiTransfer(
                help_desk,
                # The transfer's leg counts against the cap of the node the call is on.
                NodeSlots([link.dialer for link in links]),
                whispers,
                SpokenText(settings.var_dir / "handoff"),
                TransferConfig.from_settings(settings),
            )
        if agi_port is not None:
            settings = settings.model_copy(update={"agi_port": agi_port})
        routes: dict[str, AgiHandler] = {"checkin": flow, "whisper": whispers}
        agi = AgiServer.from_settings(settings, routes) if serve_agi else None
        return cls(links, registry, agi, listener)

    async def start(self, boot_timeout_s: float = 30.0) -> None:
        # AGI first: Asterisk may run the dialplan's AGI() as soon as a call is answered.
        if self.agi is not None:
            await self.agi.start()
            # Every call this process places names this process's FastAGI server (ANBU_AGI),
            # so no process re-points the engine's globals and takes another's IVR results
            # (`anbu call` beside `anbu run` took the stack's calls). A bind-all address names
            # no host the engine could reach: those calls keep the engine's globals.
            if self.agi.host not in ("", "0.0.0.0", "::"):
                host = f"[{self.agi.host}]" if ":" in self.agi.host else self.agi.host
                for link in self.links:
                    if link.dialer.agi_address is None:
                        link.dialer.agi_address = f"{host}:{self.agi.port}"
        for link in self.links:
            link.ami.start()
            link.dialer.start()
        # One node up is enough to start: the others join when their AMI connects (each
        # client reconnects by itself), and the dispatcher sends them calls from then on.
        # Once one is up the others get a short grace, so nodes that boot a moment later
        # are not reported down.
        waits = [asyncio.create_task(link.ami.wait_booted(boot_timeout_s)) for link in self.links]
        errors: list[BaseException] = []
        try:
            for next_done in asyncio.as_completed(waits):
                try:
                    await next_done
                except (AnbuError, TimeoutError) as exc:
                    errors.append(exc)
                    continue
                pending = [w for w in waits if not w.done()]
                if pending:
                    await asyncio.wait(pending, timeout=NODE_JOIN_GRACE_S)
                break
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if len(errors) == len(self.links):
            raise errors[0]
        for link in self.links:
            if not link.ami.booted:
                log.error("ENGINE NODE DOWN at start: %s (it joins when its AMI is up)", link.name)

    async def stop(self) -> None:
        for link in self.links:
            await link.dialer.close()
        if self.agi is not None:
            await self.agi.stop()
        for link in self.links:
            await link.trunk.close()
            await link.ami.close()
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
    """Each resident's voice profile, read by the IVR at call time, and the official who
    visits them (whose recorded greeting plays)."""
    return DbVoiceProfiles(container.sessions, ChainVisitors(container.sessions))


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
    # Kannel's delivery reports (two per alert sent) are matched before every other route.
    app.router.routes.insert(0, escalation_api.DLR_ROUTE)
    # On app.state, never in ``app.dependency_overrides``: while that dict is not empty,
    # FastAPI re-inspects every dependency of every route on every request.
    app.state.recording_store = recording_store(container.settings)
    service = escalation or build_escalation(container, send=False).service
    app.state.escalation = service
    # The officials' console (anbu.console): acknowledges through this same service.
    app.state.console_escalation = service
    # 설정's officials and chains: written by the same directory functions as the API's.
    app.state.console_directory = directory.ConsoleDirectory(
        container.settings.escalation.default_ack_timeout_s
    )
    app.include_router(console_routes.router)
    # 녹음 (the console's upload page): in ivr/, as it needs the recording store above.
    app.include_router(recording_console.router)
    app.add_exception_handler(console_routes.ConsoleRefusedError, console_routes.refused_page)
    app.add_exception_handler(console_routes.LoginRequiredError, console_routes.login_redirect)
    return app


def admin_pager(container: Container, escalation: EscalationService) -> AdminPager | None:
    """Administrators' SMS pages (node down, network failure, failed self-test), or None when
    ``escalation.admin_phones`` is empty: then the ERROR log lines are the only page."""
    settings = container.settings
    if not settings.escalation.admin_phones:
        log.warning(
            "no ANBU_ESCALATION__ADMIN_PHONES: a dead engine node, a network failure or a failed"
            " self-test is only logged"
        )
        return None
    return AdminPager(
        container.sessions,
        settings.escalation.admin_phones,
        settings.sms.sender,
        container.clock,
        tz=zone(settings.scheduling.timezone),
        interval=dt.timedelta(seconds=settings.escalation.admin_page_interval_s),
        wake=escalation.wake,
    )


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
        nodes=telephony.engine_nodes(),
    )
    dispatcher.add_listener(escalation.on_checkin_closed)
    pager = admin_pager(container, escalation)
    if pager is not None:
        dispatcher.on_node_down = pager.node_down
        dispatcher.on_network_failure = pager.network_failure
    for link in telephony.links:
        # A node going down or coming back is acted on by a pass at once, not at the next poll.
        link.ami.on_state(lambda _state: dispatcher.wake())
        link.trunk.on_change = dispatcher.wake
    container.dispatcher = dispatcher
    container.readiness["asterisk"] = lambda: telephony.booted
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
    pager = admin_pager(container, escalation.service)

    async def record_retention() -> object:
        return await apply_retention(container.sessions, container.clock.now(), records)

    return build_scheduler(
        container,
        dispatcher,
        risk_sweep=risk_sweep,
        risk_retention=retention,
        record_retention=record_retention,
        escalation_tick=escalation.runtime.tick if escalation.runtime is not None else None,
        on_self_test_failed=pager.self_test_failed if pager is not None else None,
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
