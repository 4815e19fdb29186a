"""Ports by role: what the core needs from the outside world. Adapters live at the edge
(``ivr.dialer.AmiDialer``, ``escalation.providers.KannelSmsSender``, ``ivr.speech.VoskRecognizer``)
and are built in one place, ``anbu.app`` (the composition root)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from anbu.domain.calls import CallResult
from anbu.domain.handoff import LegResult, Whisper
from anbu.domain.machine import Answerer
from anbu.domain.replies import Reply
from anbu.domain.sms_text import OutgoingSms, SendReceipt
from anbu.domain.speech_intent import SpeechResult
from anbu.domain.voice import DEFAULT_VOICE, VoiceProfile


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One dial attempt. ``channel_id`` is ours: it becomes the Asterisk channel's uniqueid."""

    channel_id: str
    number: str  # national digits, already validated
    district_name: str = ""
    ring_timeout_s: float = 30.0
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What one attempt got: the network result and, when answered, the resident's reply."""

    channel_id: str
    result: CallResult
    hangup_cause: int | None
    originated_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    reply: Reply | None = None
    keys: str = ""
    transcript: str | None = None
    confidence: float | None = None
    sip_status: int | None = None  # the far end's last SIP status (anbu.domain.calls)
    # The outcome is not known: the engine node's AMI was lost (the node died) and the channel
    # vanished or did not come back within the bound. Stored as an ``unknown`` attempt,
    # counted and retried, like a call a crashed worker left behind.
    lost: bool = False


class Dialer(Protocol):
    async def call(self, request: CallRequest) -> CallRecord:
        """Place the call, run the IVR when answered, return when the channel is gone."""
        ...


class SpeechRecognizer(Protocol):
    async def listen(self, audio_path: Path) -> SpeechResult:
        """Recognise one recorded reply (8 kHz 16-bit mono WAV) without blocking the loop.
        Raises an AnbuError when the file cannot be read."""
        ...


class Wakeable(Protocol):
    def wake(self) -> None:
        """Look for work now instead of at the next poll (a check-in was just opened)."""
        ...


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class SmsSender(Protocol):
    """The port: send one message, or raise ``SmsError`` (with ``retryable``)."""

    name: str

    async def send(self, message: OutgoingSms) -> SendReceipt: ...

    async def aclose(self) -> None: ...


class ChannelProbe(Protocol):
    async def live_channel_ids(self) -> set[str]:
        """Unique ids of the channels that exist now. Raises when it cannot ask."""
        ...


@dataclass(frozen=True, slots=True)
class IvrOutcome:
    """What the IVR got on one answered call, keyed by the channel's uniqueid."""

    channel_id: str
    reply: Reply | None  # None only when the IVR itself failed (``error`` says why)
    keys: str
    started_at: dt.datetime
    ended_at: dt.datetime
    replied_at: dt.datetime | None = None
    asks: int = 0
    transcript: str | None = None
    confidence: float | None = None
    error: str | None = None
    # Not a person: the carrier's voicemail or an answering machine (reply is None then).
    machine: Answerer | None = None
    # The prompt files played, in order (paths without extension, as Asterisk was given
    # them): whose voice the resident heard (an official's, the district's, the TTS).
    played: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HandoffTarget:
    """One official to call when a resident asks for help."""

    official_id: str
    name: str
    phone: str  # national digits
    role: str


@dataclass(frozen=True, slots=True)
class HandoffPlan:
    """Whom to call, in order, and what they hear first; the incident that records it."""

    incident_id: str
    whisper: Whisper
    targets: tuple[HandoffTarget, ...]


class HelpDesk(Protocol):
    """Where a transfer's decisions and records live (``escalation.handoff``): the IVR only
    dials and bridges."""

    async def begin(self, channel_id: str) -> HandoffPlan | None:
        """Open the help incident of this call's check-in and say whom to call; None when the
        resident must not be connected (do-not-call) or nobody can be called (the incident,
        if any, is then paged by SMS)."""
        ...

    async def calling(self, incident_id: str, target: HandoffTarget) -> None: ...

    async def leg_ended(
        self, incident_id: str, target: HandoffTarget, result: LegResult, rang: bool
    ) -> None:
        """A leg that was not taken (or the accepted one: then the incident is acknowledged)."""
        ...

    async def talked(self, incident_id: str, target: HandoffTarget, seconds: float) -> None: ...

    async def page(self, incident_id: str) -> None:
        """Nobody accepted: the chain's SMS page of today."""
        ...


@dataclass(frozen=True, slots=True)
class CallVoice:
    """How one call sounds: the resident's profile, and whose recorded prompts (if any) play
    instead of the TTS voice: the official who visits the resident (their own greeting), else
    the district's."""

    profile: VoiceProfile = DEFAULT_VOICE
    district_code: str | None = None
    official_id: str | None = None


class VisitingOfficials(Protocol):
    """Who visits a resident (``escalation``): the first official of the escalation chain for
    their dong (else the district's chain), whose recorded greeting the resident hears."""

    async def visitor(self, district_id: int, dong: str) -> str | None:
        """The official's id; None when the chain has nobody (or there is no chain)."""
        ...


class VoiceProfiles(Protocol):
    async def for_call(self, channel_id: str) -> CallVoice:
        """How the resident of this call hears it (the defaults when unknown)."""
        ...


class OutcomeSink(Protocol):
    def report(self, outcome: IvrOutcome) -> None:
        """Take the outcome of one call; must not block."""
        ...
