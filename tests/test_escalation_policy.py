"""Escalation policy, pure: who is told when, the exact Korean text, reply codes, providers."""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, Outcome
from anbu.domain.escalation import (
    ALWAYS,
    OFFICE_HOURS,
    SEOUL,
    AlertFacts,
    AttemptFacts,
    DutyHours,
    Step,
    Urgency,
    alert_for,
    key_text,
    korean_holiday,
    mask_name,
    next_step,
    render_alert,
    render_digest,
)
from anbu.domain.replies import Reply
from anbu.domain.sms_text import SMS_MAX_BYTES, SmsKind, cp949_len, ucs2_parts
from escalation.outbox import OutboxConfig, choose_provider


def kst(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=SEOUL)


@pytest.mark.parametrize(
    ("outcome", "urgency"),
    [
        (Outcome.HELP, Urgency.URGENT),
        (Outcome.UNREACHABLE, Urgency.NORMAL),
        (Outcome.NO_RESPONSE, Urgency.NORMAL),
        (Outcome.DECLINED, Urgency.NORMAL),
        (Outcome.INVALID_NUMBER, Urgency.NORMAL),
        (Outcome.OK, None),
        (Outcome.CALLBACK, None),
    ],
)
def test_given_outcome_when_case_closes_then_alert_urgency_follows(
    outcome: Outcome, urgency: Urgency | None
) -> None:
    assert alert_for(outcome) is urgency


NIGHT = DutyHours(frozenset(range(7)), dt.time(18, 0), dt.time(9, 0))


@pytest.mark.parametrize(
    ("duty", "at", "on"),
    [
        # 2026-11-25 is a Wednesday; 2026-11-28 a Saturday; 2026-12-25 (Friday) 성탄절.
        (OFFICE_HOURS, kst(2026, 11, 25, 9, 0), True),
        (OFFICE_HOURS, kst(2026, 11, 25, 8, 59, 59), False),
        (OFFICE_HOURS, kst(2026, 11, 25, 17, 59, 59), True),
        (OFFICE_HOURS, kst(2026, 11, 25, 18, 0), False),
        (OFFICE_HOURS, kst(2026, 11, 28, 10, 0), False),
        (OFFICE_HOURS, kst(2026, 12, 25, 10, 0), False),
        (NIGHT, kst(2026, 11, 25, 23, 0), True),
        (NIGHT, kst(2026, 11, 26, 3, 0), True),
        (NIGHT, kst(2026, 11, 26, 9, 0), False),
        (NIGHT, kst(2026, 11, 25, 12, 0), False),
        (ALWAYS, kst(2026, 12, 25, 4, 0), True),
        # A weekday-only night shift: Friday night runs into Saturday morning, not Saturday night.
        (
            DutyHours(frozenset(range(5)), dt.time(18, 0), dt.time(9, 0)),
            kst(2026, 11, 28, 2, 0),
            True,
        ),
        (
            DutyHours(frozenset(range(5)), dt.time(18, 0), dt.time(9, 0)),
            kst(2026, 11, 28, 20, 0),
            False,
        ),
    ],
)
def test_given_duty_hours_when_asked_at_a_local_time_then_on_duty_follows(
    duty: DutyHours, at: dt.datetime, on: bool
) -> None:
    assert duty.on_duty(at.astimezone(dt.UTC), holidays=korean_holiday) is on


CHAIN = [
    Step(1, "primary", 600, OFFICE_HOURS),
    Step(2, "backup", 600, OFFICE_HOURS),
    Step(3, "centre", 900, ALWAYS),
]


@pytest.mark.parametrize(
    ("after", "at", "expected"),
    [
        (None, kst(2026, 11, 25, 10, 0), "primary"),
        (1, kst(2026, 11, 25, 10, 10), "backup"),
        (2, kst(2026, 11, 25, 10, 20), "centre"),
        (3, kst(2026, 11, 25, 10, 35), None),
        # At night the office steps are skipped: straight to the centre.
        (None, kst(2026, 11, 25, 23, 0), "centre"),
        # The primary was told at 17:55; at 18:05 the backup is off duty too.
        (1, kst(2026, 11, 25, 18, 5), "centre"),
        (None, kst(2026, 12, 25, 10, 0), "centre"),
    ],
)
def test_given_chain_when_choosing_next_step_then_first_on_duty_is_told(
    after: int | None, at: dt.datetime, expected: str | None
) -> None:
    step = next_step(CHAIN, after, at)
    assert (step.official_id if step else None) == expected


def test_given_nobody_on_duty_when_choosing_then_last_step_is_told_anyway() -> None:
    office_only = [Step(1, "primary", 60, OFFICE_HOURS), Step(2, "backup", 60, OFFICE_HOURS)]
    step = next_step(office_only, None, kst(2026, 11, 28, 3, 0))
    assert step is not None
    assert step.official_id == "backup"
    assert next_step(office_only, 2, kst(2026, 11, 28, 3, 0)) is None


def test_given_names_when_masking_then_initial_and_two_circles() -> None:
    assert mask_name("김안부") == "김○○"
    assert mask_name("남궁민수") == "남○○"
    assert mask_name(" 이 ") == "이○○"
    assert mask_name("") == "○○"


T0 = dt.datetime(2026, 11, 25, 5, 3, 5, tzinfo=dt.UTC)  # 14:03:05 in Seoul


def facts(**kw: object) -> AlertFacts:
    base: dict[str, object] = {
        "resident_name": "김안부",
        "dong": "신림동",
        "district_name": "관악구",
        "outcome": Outcome.UNREACHABLE,
        "urgency": Urgency.NORMAL,
        "reason": "전화 기록 52시간 없음\n스마트플러그 30시간 변화 없음",
        "attempts": (
            AttemptFacts(1, AttemptStatus.FINISHED, CallResult.NO_ANSWER, None, T0),
            AttemptFacts(
                2, AttemptStatus.FINISHED, CallResult.BUSY, None, T0 + dt.timedelta(minutes=10)
            ),
            AttemptFacts(3, AttemptStatus.UNKNOWN, None, None, T0 + dt.timedelta(minutes=20)),
        ),
        "closed_at": T0 + dt.timedelta(minutes=20, seconds=40),
        "code": "1234",
        "link": "http://127.0.0.1:8080/ack/AbCdEfGhIjKlMnOpQrStUv",
    }
    base.update(kw)
    return AlertFacts(**base)  # type: ignore[arg-type]


def test_given_unreachable_case_when_rendering_then_exact_korean_lms() -> None:
    sms = render_alert(facts())
    assert sms.kind is SmsKind.LMS
    assert sms.subject == "[안부] 안부확인 알림"
    assert sms.text == (
        "[안부] 김○○(신림동) 전화 안받음. 회신 1234\n"
        "대상: 김○○ (관악구 신림동)\n"
        "사유: 전화 기록 52시간 없음 / 스마트플러그 30시간 변화 없음\n"
        "통화: 3회 시도, 11-25 14:23:45 종료\n"
        "1) 11-25 14:03:05 받지 않음\n"
        "2) 11-25 14:13:05 통화중\n"
        "3) 11-25 14:23:05 결과 불명\n"
        "확인: 1234 회신 또는 http://127.0.0.1:8080/ack/AbCdEfGhIjKlMnOpQrStUv"
    )
    assert sms.text.splitlines()[0] == key_text(facts())


def test_given_help_reply_when_rendering_then_key_line_is_urgent_and_within_one_sms() -> None:
    f = facts(
        outcome=Outcome.HELP,
        urgency=Urgency.URGENT,
        attempts=(AttemptFacts(1, AttemptStatus.FINISHED, CallResult.ANSWERED, Reply.HELP, T0),),
        closed_at=T0 + dt.timedelta(seconds=31),
        reason="정기 안부전화",
        step_number=2,
    )
    assert key_text(f) == "[안부] 긴급 김○○(신림동) 도움요청. 회신 1234"
    assert cp949_len(key_text(f)) <= SMS_MAX_BYTES
    sms = render_alert(f)
    assert sms.subject == "[안부] 긴급 도움요청"
    assert sms.text.splitlines()[1:] == [
        "대상: 김○○ (관악구 신림동)",
        "사유: 정기 안부전화",
        "통화: 1회 시도, 11-25 14:03:36 종료",
        "1) 11-25 14:03:05 받음, 도움 요청",
        "2차 알림: 앞 담당자가 확인하지 않음",
        "확인: 1234 회신 또는 http://127.0.0.1:8080/ack/AbCdEfGhIjKlMnOpQrStUv",
    ]


@pytest.mark.parametrize("outcome", [o for o in Outcome if alert_for(o) is not None])
def test_given_long_names_when_rendering_key_line_then_it_never_exceeds_90_bytes(
    outcome: Outcome,
) -> None:
    f = facts(outcome=outcome, urgency=alert_for(outcome), dong="가나다라마바사아자차카타동")
    assert cp949_len(key_text(f)) <= SMS_MAX_BYTES
    assert render_alert(f).text.splitlines()[0] == key_text(f)


def test_given_very_long_reason_when_rendering_then_alert_fits_kannel_parts() -> None:
    f = facts(
        reason="가" * 3000,
        attempts=tuple(
            AttemptFacts(n, AttemptStatus.FINISHED, CallResult.NO_ANSWER, None, T0)
            for n in range(1, 6)
        ),
    )
    sms = render_alert(f)
    assert ucs2_parts(sms.text) <= 10
    assert "…" in sms.text


def test_given_device_problems_when_rendering_digest_then_count_and_lines() -> None:
    sms = render_digest(
        "관악구", ["김○○(신림동) 스마트플러그 무신호 26시간"], dt.date(2026, 11, 25)
    )
    assert sms.text == "[안부] 관악구 기기점검 1건 (11-25)\n김○○(신림동) 스마트플러그 무신호 26시간"


@pytest.mark.parametrize(
    ("attempt", "refused", "expected"),
    [
        (1, set(), "kannel"),
        (2, set(), "kannel"),
        (3, set(), "solapi"),
        (4, set(), "solapi"),
        (5, set(), "kannel"),
        (1, {"kannel"}, "solapi"),
        (3, {"solapi"}, "kannel"),
        (1, {"kannel", "solapi"}, None),
    ],
)
def test_given_attempt_and_refusals_when_choosing_provider_then_failover_rotates(
    attempt: int, refused: set[str], expected: str | None
) -> None:
    assert choose_provider(["kannel", "solapi"], attempt, refused, 2) == expected


def test_given_attempts_when_backing_off_then_doubles_up_to_the_cap() -> None:
    cfg = OutboxConfig(retry_initial_s=1, retry_max_s=10)
    assert [cfg.backoff(n).total_seconds() for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize(
    ("status", "result", "words"),
    [
        (AttemptStatus.DIALING, None, "통화 진행 중"),
        (AttemptStatus.SCHEDULED, None, "미발신"),
        (AttemptStatus.UNKNOWN, None, "결과 불명"),
        (AttemptStatus.FINISHED, CallResult.BUSY, "통화중"),
    ],
)
def test_given_a_help_call_still_on_the_line_when_paging_then_its_attempt_is_not_undialled(
    status: AttemptStatus, result: CallResult | None, words: str
) -> None:
    # Seen in `make docker-test`: a resident pressed 2, nobody took the transfer, and the SMS
    # listed the live call as "미발신" (never dialled).
    assert AttemptFacts(1, status, result, None, T0).words() == words
