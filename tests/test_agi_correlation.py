"""Correlation: every process's calls carry their own AGI address (issue 10, point 6).

A running stack serves FastAGI on the engine's global AGI port; a one-off ``anbu call`` (and
any other process) builds its telephony with its own FastAGI server on a free port. Both dial
through the same engine at the same time: each process's IVR gets only its own calls, and the
engine's globals are never re-pointed.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from anbu.app.parts import Telephony
from anbu.domain.calls import CallResult
from anbu.domain.replies import Reply
from anbu.ports import CallRequest, IvrOutcome, SystemClock
from ivr.dialer import CallRegistry
from tests.call_rig import tone_prompts
from tests.fixtures_asterisk import AsteriskPair

pytestmark = pytest.mark.asterisk

OK = "01099990001"
HELP = "01099990002"


@pytest.fixture
def short_prompts(tmp_path: Path) -> Path:
    return tone_prompts(tmp_path, question_s=2.0)


async def test_given_stack_and_one_off_call_on_one_engine_when_both_dial_then_each_gets_its_own(
    asterisk_pair: AsteriskPair, short_prompts: Path
) -> None:
    settings = asterisk_pair.settings.model_copy(
        update={"audio_dir": short_prompts, "reply_timeout_s": 1.0}
    )
    strays: dict[str, list[IvrOutcome]] = {"stack": [], "one_off": []}
    # The engine's global AGI port, as `anbu run` serves it.
    stack = Telephony.build(
        settings, SystemClock(), registry=CallRegistry(on_unclaimed=strays["stack"].append)
    )
    # `anbu call` beside it: a free port.
    one_off = Telephony.build(
        settings,
        SystemClock(),
        agi_port=0,
        registry=CallRegistry(on_unclaimed=strays["one_off"].append),
    )
    await stack.start()
    await one_off.start()
    globals_before = asterisk_pair.engine.rx("dialplan show globals")
    assert one_off.agi is not None
    assert stack.agi is not None
    try:
        assert one_off.agi.port != stack.agi.port
        assert one_off.dialer.agi_address == f"127.0.0.1:{one_off.agi.port}"

        def request(tag: str, number: str) -> CallRequest:
            return CallRequest(f"{tag}-{uuid.uuid4().hex[:10]}", number, ring_timeout_s=10.0)

        calls = [
            stack.dialer.call(request("stack", OK)),
            one_off.dialer.call(request("oneoff", HELP)),
            stack.dialer.call(request("stack", HELP)),
            one_off.dialer.call(request("oneoff", OK)),
        ]
        records = await asyncio.wait_for(asyncio.gather(*calls), 60)
    finally:
        await one_off.stop()
        await stack.stop()
    assert [(r.result, r.reply) for r in records] == [
        (CallResult.ANSWERED, Reply.OK),
        (CallResult.ANSWERED, Reply.HELP),
        (CallResult.ANSWERED, Reply.HELP),
        (CallResult.ANSWERED, Reply.OK),
    ]
    # No process's IVR ran a call another placed.
    assert strays == {"stack": [], "one_off": []}
    assert asterisk_pair.engine.rx("dialplan show globals") == globals_before
