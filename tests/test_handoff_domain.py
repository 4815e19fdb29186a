"""The pure core of a person on the line: call order, whisper, leg results (table-driven)."""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.escalation import OFFICE_HOURS, SEOUL, DutyHours, Step
from anbu.domain.handoff import LegResult, handoff_order, leg_result, whisper_for
from anbu.domain.replies import Reply, reply_for_key

NIGHT = DutyHours(start=dt.time(18, 0), end=dt.time(9, 0))
CHAIN = [
    Step(1, "dong", 600, OFFICE_HOURS),
    Step(2, "backup", 600, OFFICE_HOURS),
    Step(3, "centre", 900, NIGHT),
]


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, 0, tzinfo=SEOUL)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (at(3, 10), ["dong", "backup", "centre"]),  # Thursday office hours: centre last
        (at(3, 22), ["centre"]),  # the night: the night centre only
        (at(5, 10), ["centre"]),  # Saturday: nobody in the office
        (dt.datetime(2026, 12, 25, 10, tzinfo=SEOUL), ["centre"]),  # Christmas (holiday)
    ],
)
def test_given_chain_with_duty_hours_when_help_then_called_in_duty_order(
    when: dt.datetime, expected: list[str]
) -> None:
    assert [s.official_id for s in handoff_order(CHAIN, when)] == expected


def test_given_empty_chain_then_nobody_to_call() -> None:
    assert handoff_order([], at(3, 10)) == []


def test_given_resident_when_whisper_then_name_masked_and_dong_named() -> None:
    whisper = whisper_for("김안부", "신림동")
    assert whisper.text == "안부확인 긴급 연결, 김○○ 어르신, 신림동"
    assert "안부" not in whisper.spoken.replace("안부확인", "")  # the given name is never said
    assert "김 어르신" in whisper.spoken
    assert "일번" in whisper.spoken


@pytest.mark.parametrize(
    ("status", "answered", "accepted", "machine", "gone", "expected"),
    [
        ("ANSWER", True, True, False, False, LegResult.ACCEPTED),
        ("ANSWER", True, True, False, True, LegResult.ACCEPTED),  # talked, then hung up
        ("ANSWER", True, False, False, False, LegResult.NOT_ACCEPTED),
        ("CANCEL", True, False, False, False, LegResult.NOT_ACCEPTED),
        ("ANSWER", True, False, True, False, LegResult.VOICEMAIL),
        ("NOANSWER", False, False, False, False, LegResult.NO_ANSWER),
        ("BUSY", False, False, False, False, LegResult.BUSY),
        ("CHANUNAVAIL", False, False, False, False, LegResult.UNAVAILABLE),
        ("CONGESTION", False, False, False, False, LegResult.UNAVAILABLE),
        ("", False, False, False, True, LegResult.RESIDENT_GONE),
        ("CANCEL", False, False, False, False, LegResult.RESIDENT_GONE),
    ],
)
def test_given_dial_and_whisper_when_leg_ends_then_result(
    status: str, answered: bool, accepted: bool, machine: bool, gone: bool, expected: LegResult
) -> None:
    assert (
        leg_result(
            status, answered=answered, accepted=accepted, machine=machine, resident_gone=gone
        )
        is expected
    )


def test_given_key_0_then_help_like_key_2() -> None:
    assert reply_for_key("0") is Reply.HELP
    assert reply_for_key("2") is Reply.HELP
    assert reply_for_key("9") is None


def test_every_ack_channel_has_korean_words() -> None:
    from anbu.domain.escalation import ACK_CHANNEL_WORDS
    from anbu.domain.incidents import AckChannel

    assert set(ACK_CHANNEL_WORDS) == set(AckChannel)
