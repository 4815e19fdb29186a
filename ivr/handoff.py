"""A person on the line, the Asterisk side: the resident's call is connected to an official.

When the resident asks for help (key 2, the spoken reply, or key 0 at any time) the check-in
flow hands its AGI session to :class:`AgiTransfer`. The decisions and records are the
:class:`anbu.ports.HelpDesk`'s (``escalation.handoff``); this module plays, dials and bridges:

1. the resident hears a short holding message;
2. for each official in the desk's order, ``EXEC Dial(PJSIP/<number>@trunk, ring,
   U(anbu-whisper^<agi>^<token>))`` on the resident's channel; the resident hears ringing;
3. when the official answers, Asterisk runs the ``anbu-whisper`` Gosub on *their* channel
   before bridging: it comes back here as a FastAGI session (:class:`WhisperFlow`), which plays
   the whisper ("안부확인 긴급 연결, 김○○ 어르신, 신림동 ...") and listens for 1 through the
   flow's own :class:`ivr.flow.ReplyListener`, so the voicemail / answering-machine detection
   of the check-in call (``ivr/stream.py``) also tells an official's 소리샘 from the official;
4. 1 within the accept window: the Gosub returns and Dial bridges the two; anything else
   (another key, silence, a machine) sets ``GOSUB_RESULT=CONTINUE``: Asterisk hangs the
   official's leg up and the resident's Dial returns, and the next official is tried;
5. nobody accepted: the desk pages the chain by SMS, and the flow says so to the resident.

Why Dial() on the resident's own channel and not an Originate plus a Bridge action: the
channel the dialer placed stays where it is (its uniqueid, hangup handler and AGI session are
unchanged, so the call's record is the same), and ``U()`` gives the pre-bridge whisper with
accept or refuse in one place. The second channel is counted against the node's cap through
the dialer's :meth:`ivr.dialer.AmiDialer.leg_slot`, which also tells the dispatcher's Pacer
(the global cap counts it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from anbu.domain.handoff import LegResult, leg_result
from anbu.domain.phone import mask_phone
from anbu.ports import HandoffPlan, HandoffTarget, HelpDesk
from anbu.settings import Settings
from ivr.agi import AgiHangupError, AgiSession
from ivr.dialer import AmiDialer
from ivr.flow import KeypadListener, ReplyListener
from ivr.tts import espeak, run_sox, to_telephone

log = logging.getLogger(__name__)

ACCEPT_KEY = "1"
# Korean ringback: 440 + 480 Hz, 1 s on, 2 s off (what the resident heard before, from Dial's r).
RING_ON_S, RING_OFF_S = 1.0, 2.0
# The caller's channel variable naming this process's FastAGI server (ivr.dialer).
AGI_ADDRESS_VARIABLE = "ANBU_AGI"
WHISPER_CONTEXT = "anbu-whisper"


class ChannelSlots(Protocol):
    def channel_slot(
        self, channel_id: str, wait_s: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """The cap check for a second channel of the call ``channel_id``."""
        ...

    def extend_call(self, channel_id: str, seconds: float) -> bool:
        """Lift the call-length cap of ``channel_id`` for a bridged conversation."""
        ...


class NodeSlots:
    """:class:`ChannelSlots` over the engine nodes: the leg takes a slot of the node the
    resident's call is on (its dialer's ``channel_slot``, the one cap check of a node). A call
    this process did not place (its IVR came here from a dialer elsewhere) uses the first."""

    def __init__(self, dialers: Sequence[AmiDialer]) -> None:
        self._dialers = list(dialers)

    def channel_slot(
        self, channel_id: str, wait_s: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        dialer = next((d for d in self._dialers if d.places(channel_id)), self._dialers[0])
        return dialer.leg_slot(wait_s)

    def extend_call(self, channel_id: str, seconds: float) -> bool:
        return any(d.extend_call(channel_id, seconds) for d in self._dialers)


def render_hold_music(text: str, folder: Path, *, voice: str = "ko", rate: int = 160) -> None:
    """The holding class's files into ``folder``: ``1-hold.wav`` (``text`` spoken as
    :class:`SpokenText` speaks it) and ``2-ring.wav`` (two rings). Music on hold loops them
    while the official's phone rings, so the message no longer delays the dial. Blocking."""
    folder.mkdir(parents=True, exist_ok=True)
    hold, ring = folder / "1-hold.wav", folder / "2-ring.wav"
    stamp = folder / "hold.txt"
    wanted = f"{voice}|{rate}|{text}"
    if hold.is_file() and ring.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return
    raw, partial = folder / ".raw.wav", folder / ".partial.wav"
    try:
        espeak(text, raw, voice=voice, rate=rate)
        to_telephone(raw, partial, lead_in_s=0.2, tail_s=0.5)
        partial.replace(hold)
        ring_args = ("synth", f"{RING_ON_S}", "sine", "440", "sine", "mix", "480", "vol", "0.25")
        pause = ("pad", "0", f"{RING_OFF_S}", "repeat", "1")
        run_sox("-n", "-r", "8000", "-c", "1", "-b", "16", partial, *ring_args, *pause)
        partial.replace(ring)
        stamp.write_text(wanted)
    finally:
        raw.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


class SpokenText:
    """Short texts spoken with espeak-ng, rendered once per text into ``cache_dir`` (8 kHz
    WAV, the same pipeline as the catalogue's). Returns paths without extension, as AGI
    plays them."""

    def __init__(self, cache_dir: Path, *, voice: str = "ko", rate: int = 160) -> None:
        self.cache_dir = cache_dir
        self._voice = voice
        self._rate = rate
        self._locks: dict[str, asyncio.Lock] = {}

    async def path(self, text: str) -> str:
        key = hashlib.sha256(f"{self._voice}|{self._rate}|{text}".encode()).hexdigest()[:24]
        base = self.cache_dir / key
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # Rendering (espeak-ng, sox) blocks: a thread.
            await asyncio.to_thread(self._render, text, base.with_suffix(".wav"))
        return str(base)

    def _render(self, text: str, dst: Path) -> None:
        if dst.is_file():
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        raw = dst.with_suffix(".raw.wav")
        partial = dst.with_suffix(".partial.wav")
        try:
            espeak(text, raw, voice=self._voice, rate=self._rate)
            to_telephone(raw, partial, lead_in_s=0.2, tail_s=0.2)
            partial.replace(dst)
        finally:
            raw.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)


@dataclass(slots=True)
class _Pending:
    whisper: str  # path without extension
    accept_timeout_s: float
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    decided: asyncio.Future[tuple[bool, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class WhisperFlow:
    """The AGI handler for ``/whisper``: runs on the official's channel before the bridge."""

    def __init__(self, listener: ReplyListener | None = None) -> None:
        self._listener: ReplyListener = listener or KeypadListener()
        self._pending: dict[str, _Pending] = {}

    def expect(self, token: str, whisper: str, accept_timeout_s: float) -> _Pending:
        pending = _Pending(whisper, accept_timeout_s)
        self._pending[token] = pending
        return pending

    def forget(self, token: str) -> None:
        self._pending.pop(token, None)

    async def __call__(self, session: AgiSession) -> None:
        token = session.arg(1) or ""
        pending = self._pending.get(token)
        if pending is None:
            # Not ours (or already over): never bridge a stranger to a resident.
            log.warning("whisper %s: unknown transfer; refusing the leg", session.uniqueid)
            await session.set_variable("GOSUB_RESULT", "CONTINUE")
            return
        pending.answered.set()
        accepted = machine = False
        try:
            heard = await self._listener.listen(
                session, [pending.whisper], pending.accept_timeout_s
            )
            machine = heard.machine is not None
            accepted = not machine and heard.key == ACCEPT_KEY
            if not accepted:
                await session.set_variable("GOSUB_RESULT", "CONTINUE")
        except AgiHangupError:
            accepted = False  # the official hung up during the whisper
        finally:
            if not pending.decided.done():
                pending.decided.set_result((accepted, machine))
        log.info(
            "whisper %s: %s",
            session.uniqueid,
            "accepted" if accepted else ("machine" if machine else "not accepted"),
        )


@dataclass(frozen=True, slots=True)
class TransferConfig:
    trunk_endpoint: str = "trunk"
    caller_id: str | None = None
    ring_timeout_s: float = 20.0
    accept_timeout_s: float = 10.0
    channel_wait_s: float = 5.0
    max_talk_s: float = 3600.0
    hold_text: str = "담당 공무원에게 연결합니다. 잠시만요."
    # The engine's music-on-hold class that plays the holding message during the ring (Dial's
    # m option); None: the message plays first, then the resident hears the ring (Dial's r).
    hold_class: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TransferConfig:
        h = settings.handoff
        return cls(
            trunk_endpoint=settings.ivr.trunk_endpoint,
            caller_id=settings.ivr.caller_id or settings.trunk.caller_id,
            ring_timeout_s=h.ring_timeout_s,
            accept_timeout_s=h.accept_timeout_s,
            channel_wait_s=h.channel_wait_s,
            max_talk_s=h.max_talk_s,
            hold_text=h.hold_text,
            hold_class=h.hold_class,
        )


class AgiTransfer:
    """Connects a resident's answered call to an official (see the module's docstring)."""

    def __init__(
        self,
        desk: HelpDesk,
        slots: ChannelSlots,
        whispers: WhisperFlow,
        voice: SpokenText,
        config: TransferConfig,
    ) -> None:
        self._desk = desk
        self._slots = slots
        self._whispers = whispers
        self._voice = voice
        self.config = config

    async def connect(self, session: AgiSession) -> bool:
        """True when an official accepted and talked with the resident; False when nobody
        could be connected (the chain was paged by SMS). Raises AgiHangupError when the
        resident hung up (after paging, when nobody had accepted)."""
        plan = await self._desk.begin(session.uniqueid)
        if plan is None:
            return False
        # The check-in call's length cap (ANBU_IVR__MAX_CALL_S, 300 s) must not cut a resident
        # who asked for help off from the official: the dialer's deadline covers every leg.
        cfg = self.config
        per_leg = cfg.ring_timeout_s + cfg.accept_timeout_s + 30  # 30: hold text, whisper
        self._slots.extend_call(session.uniqueid, len(plan.targets) * per_leg + cfg.max_talk_s)
        accepted = False
        try:
            whisper = await self._voice.path(plan.whisper.spoken)
            agi_address = await session.get_variable(AGI_ADDRESS_VARIABLE) or ""
            if cfg.hold_class is None:
                # No holding class on the engine: the message first, then the dial.
                await session.stream_file(await self._voice.path(cfg.hold_text))
            for target in plan.targets:
                result = await self._leg(session, plan, target, whisper, agi_address)
                if result is LegResult.ACCEPTED:
                    accepted = True
                    return True
                if result is LegResult.RESIDENT_GONE:
                    raise AgiHangupError("the resident hung up during the transfer")
            return False
        finally:
            if not accepted:
                await self._desk.page(plan.incident_id)

    async def _leg(
        self,
        session: AgiSession,
        plan: HandoffPlan,
        target: HandoffTarget,
        whisper: str,
        agi_address: str,
    ) -> LegResult:
        cfg = self.config
        token = secrets.token_hex(8)
        pending = self._whispers.expect(token, whisper, cfg.accept_timeout_s)
        await self._desk.calling(plan.incident_id, target)
        loop = asyncio.get_running_loop()
        status = ""
        resident_gone = False
        watch: asyncio.Task[float | None] | None = None
        try:
            async with self._slot(session.uniqueid) as free:
                if not free:
                    await self._desk.leg_ended(
                        plan.incident_id, target, LegResult.NO_CHANNEL, False
                    )
                    return LegResult.NO_CHANNEL
                log.info(
                    "transfer %s: dialling %s (%s)",
                    session.uniqueid,
                    mask_phone(target.phone),
                    target.role,
                )
                # Told the moment the official presses 1 (the acknowledgement is then, not
                # when the conversation ends).
                watch = asyncio.create_task(self._on_accept(plan, target, pending))
                # m(class): the holding message plays while the official's phone rings (the
                # dial starts at once); r: the resident hears the ring (message played before).
                ring = f"m({cfg.hold_class})" if cfg.hold_class else "r"
                options = f"{ring}U({WHISPER_CONTEXT}^{agi_address}^{token})"
                if cfg.caller_id:
                    options += f"f({cfg.caller_id})"
                dial = (
                    f"PJSIP/{target.phone}@{cfg.trunk_endpoint},"
                    f"{max(1, round(cfg.ring_timeout_s))},{options}"
                )
                try:
                    await session.exec(
                        "Dial",
                        dial,
                        timeout_s=cfg.ring_timeout_s + cfg.accept_timeout_s + cfg.max_talk_s + 60,
                    )
                    status = await session.get_variable("DIALSTATUS") or ""
                except AgiHangupError:
                    resident_gone = True
                ended = loop.time()
        finally:
            self._whispers.forget(token)
        accepted, machine = pending.decided.result() if pending.decided.done() else (False, False)
        if not pending.decided.done():
            pending.decided.set_result((False, False))
        accepted_at = await watch if watch is not None else None
        result = leg_result(
            status,
            answered=pending.answered.is_set(),
            accepted=accepted,
            machine=machine,
            resident_gone=resident_gone,
        )
        if result is LegResult.ACCEPTED:
            assert accepted_at is not None
            await self._desk.talked(plan.incident_id, target, max(0.0, ended - accepted_at))
            log.info("transfer %s: talked %.1f s", session.uniqueid, ended - accepted_at)
            if resident_gone:
                raise AgiHangupError("the resident hung up after talking")
            return result
        rang = pending.answered.is_set() or status in ("NOANSWER", "ANSWER", "CANCEL")
        await self._desk.leg_ended(plan.incident_id, target, result, rang)
        log.info("transfer %s: %s (DIALSTATUS %s)", session.uniqueid, result, status or "-")
        return result

    async def _on_accept(
        self, plan: HandoffPlan, target: HandoffTarget, pending: _Pending
    ) -> float | None:
        accepted, _machine = await pending.decided
        if not accepted:
            return None
        at = asyncio.get_running_loop().time()
        await self._desk.leg_ended(plan.incident_id, target, LegResult.ACCEPTED, True)
        return at

    @contextlib.asynccontextmanager
    async def _slot(self, channel_id: str) -> AsyncIterator[bool]:
        try:
            slot = self._slots.channel_slot(channel_id, self.config.channel_wait_s)
            await slot.__aenter__()
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            await slot.__aexit__(None, None, None)


__all__ = [
    "AgiTransfer",
    "ChannelSlots",
    "NodeSlots",
    "SpokenText",
    "TransferConfig",
    "WhisperFlow",
    "render_hold_music",
]
