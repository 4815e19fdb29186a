"""Interop: the engine's trunk pointed at SIPp, a SIP stack nobody here wrote, as the phone.

Each behaviour is one short SIPp scenario (tests/sipp.py); the call goes through the real
dialer, FastAGI server and check-in flow, and ends in the attempt's classification, the reply
and the retry decision the policy takes from it. These are the failures measured in issue 10:
a phone that is off (480) or an INVITE nobody answers must never become "invalid number"; a
183 ringback never answered is "no answer"; a BYE without ``Reason`` is a resident who hung up;
every keypad method reaches the IVR.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt
from anbu.db.models_scheduling import Program
from anbu.domain.calls import CallResult
from anbu.domain.checkin import Outcome, attempt_outcome
from anbu.domain.replies import Reply
from anbu.domain.retry import GiveUp, RetryAt, RetryPolicy, decide_retry
from anbu.ports import CallRecord, CallRequest, SystemClock
from anbu.settings import Settings, TrunkSettings
from devstack.asterisk import AsteriskInstall, AsteriskInstance, provision_engine
from ivr.agi import AgiServer
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow
from ivr.prompts import PromptLibrary
from scheduler.dispatcher import Dispatcher
from tests.call_rig import dispatching, open_api_checkins, tone_prompts
from tests.fixtures_asterisk import asterisk_processes, free_ports, instance_settings
from tests.sipp import Phone, Sipp, dtmf_pcap, running, uas_scenario

pytestmark = pytest.mark.asterisk

RING_TIMEOUT_S = 3.0
QUESTION_S = 2.5
POLICY = RetryPolicy()
DIALED = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
NUMBER = "01099990013"


@dataclass
class SippEngine:
    """The engine Asterisk with its trunk pointed at the port SIPp will listen on."""

    settings: Settings
    engine: AsteriskInstance
    sipp_port: int
    media_port: int
    agi_port: int


@pytest.fixture(scope="module")
def sipp_engine(
    tmp_path_factory: pytest.TempPathFactory,
    asterisk_install: AsteriskInstall,
    bench_prompt: Path,
) -> Iterator[SippEngine]:
    var_dir = tmp_path_factory.mktemp("sippast")
    sipp_port, media_port, agi_port = free_ports(3)
    settings = Settings(
        var_dir=var_dir,
        engine=instance_settings(),
        carrier=instance_settings(),
        # No OPTIONS pings: a SIPp scenario is a script and fails on any request it does not
        # expect. Trunk health by OPTIONS is tested against the Asterisk carrier
        # (test_nodes_trunk); with it off the node stays up, as for a carrier that drops them.
        trunk=TrunkSettings(host="127.0.0.1", port=sipp_port, qualify_s=0),
        agi_host="127.0.0.1",
        agi_port=agi_port,
    )
    engine = provision_engine(settings, install=asterisk_install, bench_prompt=bench_prompt)
    engine.start()
    try:
        yield SippEngine(settings, engine, sipp_port, media_port, agi_port)
    finally:
        engine.stop()
        assert not asterisk_processes(var_dir)


@pytest.fixture(scope="module")
def sipp_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_prompts(tmp_path_factory.mktemp("sippaudio"), question_s=QUESTION_S)


@dataclass
class Far:
    """The test's handle: place calls at SIPp playing a phone."""

    rig: SippEngine
    dialer: AmiDialer
    work: Path

    @contextlib.contextmanager
    def phone(self, phone: Phone, calls: int = 1) -> Iterator[Sipp]:
        work = self.work / uuid.uuid4().hex[:8]
        work.mkdir(parents=True)
        scenario = uas_scenario(phone, work / "uas.xml")
        sipp = Sipp(scenario, self.rig.sipp_port, self.rig.media_port, work, calls=calls)
        with running(sipp):
            yield sipp

    async def call(self, ring_timeout_s: float = RING_TIMEOUT_S) -> CallRecord:
        request = CallRequest(
            channel_id=f"sipp-{uuid.uuid4().hex[:12]}", number=NUMBER, ring_timeout_s=ring_timeout_s
        )
        return await asyncio.wait_for(self.dialer.call(request), 40.0)

    async def call_phone(self, phone: Phone) -> CallRecord:
        """One call to SIPp playing ``phone``, returned once SIPp has played its part out."""
        with self.phone(phone) as sipp:
            record = await self.call()
            await sipp_done(sipp)
        return record


@pytest.fixture
async def far(sipp_engine: SippEngine, sipp_audio: Path, tmp_path: Path) -> AsyncIterator[Far]:
    engine = sipp_engine.engine
    ami = AmiClient(
        "127.0.0.1",
        engine.ami_port,
        engine.ami_user,
        engine.ami_secret,
        reconnect_initial_s=0.1,
        reconnect_max_s=0.5,
    )
    await ami.connect(timeout_s=10.0)
    registry = CallRegistry()
    flow = CheckinFlow(PromptLibrary(sipp_audio), registry, reply_timeout_s=1.0)
    agi = AgiServer({"/checkin": flow}, host="127.0.0.1", port=sipp_engine.agi_port)
    dialer = AmiDialer.from_settings(sipp_engine.settings, ami, registry)
    try:
        await agi.start()
        dialer.start()
        yield Far(sipp_engine, dialer, tmp_path)
    finally:
        await dialer.close()
        await agi.stop(grace_s=2.0)
        await ami.close()


async def sipp_done(sipp: Sipp) -> None:
    code = await asyncio.to_thread(sipp.wait)
    assert code == 0, sipp.output()


def decision(record: CallRecord) -> RetryAt | GiveUp | Outcome:
    """What the case does after this attempt (the first of the case)."""
    settled = attempt_outcome(record.result, record.reply)
    if settled is not None:
        return settled
    return decide_retry(POLICY, record.result, 1, DIALED)


# ---- the network's answers ----------------------------------------------------------------------


@pytest.mark.parametrize("reason", [None, "Q.850;cause=20", "Q.850;cause=18"])
async def test_given_phone_off_480_when_called_then_unreachable_and_retried_not_invalid(
    far: Far, reason: str | None
) -> None:
    with far.phone(Phone(final=480, reason=reason)) as sipp:
        record = await far.call()
        await sipp_done(sipp)
    assert record.result is CallResult.UNREACHABLE
    assert decision(record) == RetryAt(DIALED + POLICY.unreachable_interval)


async def test_given_invite_never_answered_when_called_then_network_failure_retried(
    far: Far,
) -> None:
    with far.phone(Phone(final=None)) as sipp:
        record = await far.call()
        await sipp_done(sipp)
    assert record.result is CallResult.NETWORK_FAILURE
    assert decision(record) == RetryAt(DIALED + POLICY.failure_interval)


async def test_given_183_ringback_never_answered_when_called_then_no_answer(far: Far) -> None:
    with far.phone(Phone(provisional=(183,), final=None)) as sipp:
        record = await far.call()
        await sipp_done(sipp)
    assert record.result is CallResult.NO_ANSWER
    assert decision(record) == RetryAt(DIALED + POLICY.interval)


async def test_given_183_announcement_then_480_when_called_then_unreachable(far: Far) -> None:
    with far.phone(Phone(provisional=(183,), final=480, reason="Q.850;cause=20")) as sipp:
        record = await far.call()
        await sipp_done(sipp)
    assert record.result is CallResult.UNREACHABLE


@pytest.mark.parametrize(
    ("final", "result", "settles"),
    [
        (404, CallResult.INVALID_NUMBER, GiveUp(Outcome.INVALID_NUMBER)),
        (484, CallResult.INVALID_NUMBER, GiveUp(Outcome.INVALID_NUMBER)),
        (486, CallResult.BUSY, RetryAt(DIALED + POLICY.busy_interval)),
        (600, CallResult.BUSY, RetryAt(DIALED + POLICY.busy_interval)),
        (603, CallResult.REJECTED, GiveUp(Outcome.DECLINED)),
        (408, CallResult.NETWORK_FAILURE, RetryAt(DIALED + POLICY.failure_interval)),
        (503, CallResult.CONGESTION, RetryAt(DIALED + POLICY.failure_interval)),
    ],
)
async def test_given_final_response_after_ringing_when_called_then_table_result(
    far: Far, final: int, result: CallResult, settles: RetryAt | GiveUp
) -> None:
    with far.phone(Phone(provisional=(180,), final=final)) as sipp:
        record = await far.call()
        await sipp_done(sipp)
    assert record.result is result
    assert decision(record) == settles


async def test_given_bye_without_reason_after_answer_when_called_then_answered_hung_up(
    far: Far,
) -> None:
    phone = Phone(provisional=(180,), actions=(("pause", "600"),), phone_hangs_up=True)
    record = await far.call_phone(phone)
    assert (record.result, record.reply) == (CallResult.ANSWERED, Reply.HUNG_UP)
    assert decision(record) is Outcome.NO_RESPONSE


async def test_given_bye_with_reason_after_answer_when_called_then_answered_hung_up(
    far: Far,
) -> None:
    phone = Phone(actions=(("pause", "600"),), phone_hangs_up=True, bye_reason="Q.850;cause=16")
    record = await far.call_phone(phone)
    assert (record.result, record.reply) == (CallResult.ANSWERED, Reply.HUNG_UP)


# ---- every keypad method ------------------------------------------------------------------------


# The engine offers telephone-event on 101; a phone may answer with its own number for it (96)
# and, as RFC 3264 says, sends on the number of the offer. (A phone that sends on its own
# number instead is not heard by Asterisk 22: see the README's interop notes.)
@pytest.mark.parametrize("answer_pt", [101, 96])
async def test_given_rfc4733_key_on_any_negotiated_payload_type_when_pressed_then_heard(
    far: Far, tmp_path: Path, answer_pt: int
) -> None:
    pcap = dtmf_pcap(tmp_path / "k.pcap", "1", method="rfc4733", event_pt=101)
    phone = Phone(telephone_event_pt=answer_pt, actions=(("pause", "700"), ("pcap", str(pcap))))
    record = await far.call_phone(phone)
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")


@pytest.mark.parametrize("style", ["dtmf-relay", "dtmf"])
async def test_given_sip_info_key_when_pressed_then_heard(far: Far, style: str) -> None:
    phone = Phone(actions=(("pause", "900"), ("info", "2", style)))
    record = await far.call_phone(phone)
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.HELP, "2")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_given_inband_tones_without_telephone_event_when_pressed_then_heard(
    far: Far, tmp_path: Path, codec: str
) -> None:
    pcap = dtmf_pcap(tmp_path / "k.pcap", "1", method="inband", codec=codec)
    phone = Phone(
        codecs=(codec,),
        telephone_event_pt=None,
        actions=(("pause", "500"), ("pcap", str(pcap))),
    )
    record = await far.call_phone(phone)
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")


async def test_given_pcma_only_phone_when_pressed_then_answered_ok(
    far: Far, tmp_path: Path
) -> None:
    pcap = dtmf_pcap(tmp_path / "k.pcap", "1", method="rfc4733", codec="PCMA")
    phone = Phone(codecs=("PCMA",), actions=(("pause", "700"), ("pcap", str(pcap))))
    record = await far.call_phone(phone)
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")


async def test_given_20_calls_at_once_when_each_presses_1_then_all_answered_ok(
    far: Far, tmp_path: Path
) -> None:
    pcap = dtmf_pcap(tmp_path / "k.pcap", "1", method="rfc4733")
    phone = Phone(actions=(("pause", "700"), ("pcap", str(pcap))))
    with far.phone(phone, calls=20) as sipp:
        records = await asyncio.gather(*(far.call() for _ in range(20)))
        await sipp_done(sipp)
    assert [(r.result, r.reply) for r in records] == [(CallResult.ANSWERED, Reply.OK)] * 20


# ---- the trunk down, across residents ----------------------------------------------------------


async def test_given_trunk_down_when_three_residents_dialed_then_network_failure_and_one_page(
    sipp_engine: SippEngine,
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Nothing listens at the trunk's address (no SIPp started): every call fails in the network.
    engine = sipp_engine.engine
    ami = AmiClient("127.0.0.1", engine.ami_port, engine.ami_user, engine.ami_secret)
    await ami.connect(timeout_s=10.0)
    dialer = AmiDialer.from_settings(sipp_engine.settings, ami, CallRegistry())
    clock = SystemClock()
    dispatcher = Dispatcher(sessions, dialer, clock, ring_timeout_s=2.0, engine=db_engine)
    pages: list[int] = []
    paged = asyncio.Event()

    async def page(residents: int) -> None:
        pages.append(residents)
        paged.set()

    dispatcher.on_network_failure = page
    async with sessions() as s:
        s.add(
            Program.any_hour(
                "all day",
                max_attempts=3,
                interval_s=600,
                busy_interval_s=180,
                failure_interval_s=120,
                max_callbacks=0,
            )
        )
        phones = [f"0109999002{i}" for i in range(3)]
        await open_api_checkins(s, phones, reason="t", now=clock.now())
        await s.commit()
    async with dispatching(dispatcher, then=[dialer.close, ami.close]):
        await asyncio.wait_for(paged.wait(), 30)
    assert pages == [3]
    async with sessions() as s:
        attempts = (await s.execute(select(CallAttempt).order_by(CallAttempt.attempt_no))).scalars()
        first = [a for a in attempts if a.attempt_no == 1]
        second = (await s.execute(select(CallAttempt).where(CallAttempt.attempt_no == 2))).scalars()
        retries = list(second)
    assert [a.result for a in first] == [CallResult.NETWORK_FAILURE] * 3
    # Retried at the failure interval, not given up as a wrong number.
    assert len(retries) == 3
    for retry in retries:
        dialed = next(a for a in first if a.checkin_id == retry.checkin_id).originated_at
        assert dialed is not None
        assert retry.scheduled_for == dialed + dt.timedelta(seconds=120)
