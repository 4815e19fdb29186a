"""Real calls: AmiDialer + AgiServer + CheckinFlow against the engine Asterisk, dialling the
carrier stand-in's scripted numbers (README table) over a real PJSIP trunk with RTP DTMF.

Needs the two real Asterisk instances (tests/fixtures_asterisk.py); if they cannot be
installed or started these tests error, they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from anbu.domain.calls import CallResult
from anbu.domain.replies import Reply
from ivr.ami import AmiState
from tests.call_rig import Rig, assert_answered, tone_prompts
from tests.call_rig import open_rig as open_call_rig
from tests.fixtures_asterisk import (
    AsteriskPair,
)
from tests.ivr_fakes import eventually

pytestmark = pytest.mark.asterisk

# The ok/help numbers press their key 1.5 s after answering: the question must still be
# playing then, so that the test proves keys pressed during a prompt count.
GREETING_S = 0.3
QUESTION_S = 2.0
REPLY_TIMEOUT_S = 1.0
RING_TIMEOUT_S = 3.0

OK = "01099990001"
HELP = "01099990002"
SILENT = "01099990003"
RINGS = "01099990004"
BUSY = "01099990005"
CONGESTION = "01099990006"
REJECTS = "01099990007"
HANGS_UP = "01099990008"
UNALLOCATED = "01099990099"


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    return tone_prompts(root, greeting_s=GREETING_S, question_s=QUESTION_S)


def open_rig(pair: AsteriskPair, audio_dir: Path) -> contextlib.AbstractAsyncContextManager[Rig]:
    return open_call_rig(pair, audio_dir, reply_timeout_s=REPLY_TIMEOUT_S)


@pytest.fixture
async def rig(asterisk_pair: AsteriskPair, audio_dir: Path) -> AsyncIterator[Rig]:
    async with open_rig(asterisk_pair, audio_dir) as made:
        yield made


# ---- one test per carrier behaviour ------------------------------------------------------------


async def test_given_resident_presses_1_during_question_when_called_then_answered_ok(
    rig: Rig,
) -> None:
    record = await rig.call(OK)
    assert_answered(record, Reply.OK, "1")
    assert record.hangup_cause == 16
    outcome = rig.sink.outcomes[record.channel_id]
    assert outcome.asks == 1
    assert outcome.replied_at is not None
    # The key came while the greeting + question were still playing, not after them.
    assert (outcome.replied_at - outcome.started_at).total_seconds() < GREETING_S + QUESTION_S


async def test_given_resident_presses_2_when_called_then_answered_help(rig: Rig) -> None:
    record = await rig.call(HELP)
    assert_answered(record, Reply.HELP, "2")


async def test_given_silent_resident_when_called_then_repeat_then_no_response(rig: Rig) -> None:
    record = await rig.call(SILENT)
    assert_answered(record, Reply.NO_RESPONSE, "")
    assert rig.sink.outcomes[record.channel_id].asks == 2


async def test_given_phone_rings_out_when_called_then_no_answer(rig: Rig) -> None:
    record = await rig.call(RINGS, ring_timeout_s=RING_TIMEOUT_S)
    assert (record.result, record.hangup_cause, record.reply) == (CallResult.NO_ANSWER, 19, None)
    assert record.answered_at is None
    assert (record.ended_at - record.originated_at).total_seconds() >= RING_TIMEOUT_S - 0.1


async def test_given_busy_line_when_called_then_busy(rig: Rig) -> None:
    record = await rig.call(BUSY)
    assert (record.result, record.hangup_cause, record.reply) == (CallResult.BUSY, 17, None)


async def test_given_congested_network_when_called_then_congestion(rig: Rig) -> None:
    record = await rig.call(CONGESTION)
    assert (record.result, record.hangup_cause) == (CallResult.CONGESTION, 34)


async def test_given_rejecting_phone_when_called_then_rejected(rig: Rig) -> None:
    record = await rig.call(REJECTS)
    assert (record.result, record.hangup_cause) == (CallResult.REJECTED, 21)


async def test_given_resident_hangs_up_at_once_when_called_then_answered_hung_up(rig: Rig) -> None:
    record = await rig.call(HANGS_UP)
    assert_answered(record, Reply.HUNG_UP, "")


async def test_given_unallocated_number_when_called_then_invalid_number(rig: Rig) -> None:
    record = await rig.call(UNALLOCATED)
    assert (record.result, record.hangup_cause) == (CallResult.INVALID_NUMBER, 1)
    assert record.reply is None


# ---- load and failures -------------------------------------------------------------------------


async def test_given_30_concurrent_calls_when_all_press_1_then_all_answered_ok(rig: Rig) -> None:
    started = time.monotonic()
    records = await asyncio.gather(*(rig.call(OK) for _ in range(30)))
    wall = time.monotonic() - started
    assert len({r.channel_id for r in records}) == 30
    assert [(r.result, r.reply, r.keys) for r in records] == [
        (CallResult.ANSWERED, Reply.OK, "1")
    ] * 30
    assert rig.dialer.active_calls == 0
    assert rig.agi.active_sessions == 0
    print(f"30 concurrent calls: {wall:.2f} s wall")  # reported, never asserted


async def test_given_engine_restarted_while_idle_when_next_call_then_ami_reconnects_and_it_works(
    make_asterisk_pair: Callable[..., AsteriskPair],
    audio_dir: Path,
) -> None:
    pair = make_asterisk_pair()  # its own: the test restarts the engine
    async with open_rig(pair, audio_dir) as rig:
        first = await rig.call(BUSY)
        assert first.result is CallResult.BUSY
        await pair.engine.restart_async()
        # No waiting for the reconnect here: the Originate is held until AMI is booted again.
        record = await rig.call(OK)
        assert_answered(record, Reply.OK, "1")
        assert rig.ami.generation >= 2
        assert AmiState.DISCONNECTED in rig.states


async def test_given_engine_stopped_mid_call_when_it_comes_back_then_call_ends_and_next_works(
    make_asterisk_pair: Callable[..., AsteriskPair],
    audio_dir: Path,
) -> None:
    pair = make_asterisk_pair()  # its own: the test restarts the engine
    async with open_rig(pair, audio_dir) as rig:
        call = asyncio.create_task(rig.call(SILENT))
        await eventually(lambda: rig.agi.active_sessions, timeout_s=10.0)
        await pair.engine.restart_async()
        record = await asyncio.wait_for(call, 40.0)
        # Asterisk going away is not the resident hanging up: a failed attempt, no reply.
        assert (record.result, record.reply) == (CallResult.FAILED, None)
        assert record.answered_at is not None
        assert "torn down" in (rig.sink.outcomes[record.channel_id].error or "")
        again = await rig.call(BUSY)
        assert again.result is CallResult.BUSY


async def test_given_fastagi_server_down_when_resident_answers_then_failed_not_hung_up(
    rig: Rig,
) -> None:
    await rig.agi.stop(grace_s=0.5)
    record = await rig.call(OK)
    # Our IVR was unreachable: a failure on our side (retried), never "the resident hung up".
    assert (record.result, record.reply) == (CallResult.FAILED, None)
    assert record.hangup_cause == 38
    assert record.answered_at is not None
