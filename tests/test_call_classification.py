"""The pure classification table: what the network said -> CallResult -> retry decision.

Every final response RFC 3261 defines (4xx-6xx) and every Q.850 cause Asterisk reports
(``AST_CAUSE_*``) has a row; a new code or cause cannot slip through unclassified.
"""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.calls import (
    CAUSE_RESULTS,
    REASON_ANSWERED,
    REASON_RINGING,
    SIP_FINAL_RESULTS,
    CallResult,
    DialReport,
    HangupCause,
    NetworkFailureWatch,
    classify_call,
    is_phone_unreachable,
    sip_status_of,
)
from anbu.domain.checkin import Outcome
from anbu.domain.retry import GiveUp, RetryAt, RetryPolicy, decide_retry

R = CallResult
DIALED = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy()

# RFC 3261 section 21.4-21.6: every 4xx, 5xx and 6xx it defines, with what it means for us.
RFC3261_FINAL: dict[int, CallResult] = {
    400: R.FAILED,
    401: R.FAILED,
    402: R.FAILED,
    403: R.REJECTED,
    404: R.INVALID_NUMBER,
    405: R.FAILED,
    406: R.FAILED,
    407: R.FAILED,
    408: R.NETWORK_FAILURE,
    410: R.INVALID_NUMBER,
    413: R.FAILED,
    414: R.FAILED,
    415: R.FAILED,
    416: R.FAILED,
    420: R.FAILED,
    421: R.FAILED,
    423: R.FAILED,
    480: R.UNREACHABLE,
    481: R.NETWORK_FAILURE,
    482: R.NETWORK_FAILURE,
    483: R.NETWORK_FAILURE,
    484: R.INVALID_NUMBER,
    485: R.INVALID_NUMBER,
    486: R.BUSY,
    487: R.NETWORK_FAILURE,
    488: R.FAILED,
    491: R.NETWORK_FAILURE,
    493: R.FAILED,
    500: R.NETWORK_FAILURE,
    501: R.FAILED,
    502: R.NETWORK_FAILURE,
    503: R.CONGESTION,
    504: R.NETWORK_FAILURE,
    505: R.FAILED,
    513: R.FAILED,
    600: R.BUSY,
    603: R.REJECTED,
    604: R.INVALID_NUMBER,
    606: R.FAILED,
}

# Every cause in Asterisk's causes.h, seen before answer with no SIP status and nothing rung.
ASTERISK_CAUSES: dict[int, CallResult] = {
    0: R.FAILED,
    1: R.INVALID_NUMBER,
    2: R.NETWORK_FAILURE,
    3: R.NETWORK_FAILURE,
    5: R.INVALID_NUMBER,
    6: R.FAILED,
    7: R.FAILED,
    8: R.FAILED,
    14: R.INVALID_NUMBER,
    16: R.FAILED,
    17: R.BUSY,
    18: R.UNREACHABLE,
    19: R.UNREACHABLE,
    20: R.UNREACHABLE,
    21: R.REJECTED,
    22: R.INVALID_NUMBER,
    23: R.FAILED,
    26: R.FAILED,
    27: R.UNREACHABLE,
    28: R.INVALID_NUMBER,
    29: R.FAILED,
    30: R.FAILED,
    31: R.FAILED,
    34: R.CONGESTION,
    38: R.NETWORK_FAILURE,
    41: R.NETWORK_FAILURE,
    42: R.CONGESTION,
    43: R.FAILED,
    44: R.NETWORK_FAILURE,
    50: R.FAILED,
    52: R.FAILED,
    54: R.FAILED,
    57: R.FAILED,
    58: R.FAILED,
    65: R.FAILED,
    66: R.FAILED,
    69: R.FAILED,
    81: R.FAILED,
    88: R.FAILED,
    95: R.FAILED,
    96: R.FAILED,
    97: R.FAILED,
    98: R.FAILED,
    99: R.FAILED,
    100: R.FAILED,
    101: R.FAILED,
    102: R.NETWORK_FAILURE,
    103: R.FAILED,
    111: R.NETWORK_FAILURE,
    127: R.NETWORK_FAILURE,
}


def rejected(
    *,
    sip: int | None = None,
    cause: int | None = None,
    reason: int = 0,
    rang: bool = False,
    progress: bool = False,
) -> DialReport:
    return DialReport(
        originate_success=False,
        reason=reason,
        hangup_cause=cause,
        rang=rang,
        sip_status=sip,
        progress=progress,
    )


def test_given_the_tables_when_compared_with_rfc3261_and_causes_h_then_every_code_has_a_row() -> (
    None
):
    assert set(SIP_FINAL_RESULTS) == set(RFC3261_FINAL)
    assert {int(c) for c in HangupCause} == set(ASTERISK_CAUSES)
    assert set(CAUSE_RESULTS) <= set(ASTERISK_CAUSES)


@pytest.mark.parametrize(("status", "expected"), sorted(RFC3261_FINAL.items()))
def test_given_final_sip_response_before_answer_when_classified_then_table_holds(
    status: int, expected: CallResult
) -> None:
    # Whatever Q.850 cause Asterisk derived (it maps many codes to the same cause), the
    # status decides.
    assert classify_call(rejected(sip=status, cause=19)) is expected
    assert classify_call(rejected(sip=status, cause=None)) is expected


@pytest.mark.parametrize(("cause", "expected"), sorted(ASTERISK_CAUSES.items()))
def test_given_only_a_q850_cause_before_answer_when_classified_then_table_holds(
    cause: int, expected: CallResult
) -> None:
    assert classify_call(rejected(cause=cause)) is expected


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        # 480 phone off, with or without Reason (Asterisk reports 19 either way, or 20).
        (rejected(sip=480, cause=19), R.UNREACHABLE),
        (rejected(sip=480, cause=20), R.UNREACHABLE),
        # 480 after the network's "전원이 꺼져 있어" announcement as early media.
        (rejected(sip=480, cause=19, progress=True), R.UNREACHABLE),
        # 480 after a real 180: the phone was there and rang out.
        (rejected(sip=480, cause=19, rang=True), R.NO_ANSWER),
        # Reason-only causes (no SIP status) 18/19/20 without ringing: not reachable now.
        (rejected(cause=20), R.UNREACHABLE),
        (rejected(cause=18), R.UNREACHABLE),
        # ... and after ringing or early media: nobody answered.
        (rejected(cause=19, rang=True), R.NO_ANSWER),
        (rejected(cause=18, progress=True), R.NO_ANSWER),
        # Our ring timeout (Reason 3): 180 or 183 seen = no answer; nothing = no answer to the
        # INVITE (the trunk or the network is down).
        (rejected(sip=180, cause=19, reason=REASON_RINGING, rang=True), R.NO_ANSWER),
        (rejected(sip=183, cause=19, reason=REASON_RINGING, progress=True), R.NO_ANSWER),
        (rejected(cause=19, reason=REASON_RINGING), R.NETWORK_FAILURE),
        (rejected(reason=REASON_RINGING), R.NETWORK_FAILURE),
        # No SIP response at all, the handler says so: Asterisk's own cause (34 for a failed
        # TLS connection, 38, 19) does not matter; without its report the cause decides.
        (DialReport(False, 0, 34, False, sip_reported=True), R.NETWORK_FAILURE),
        (DialReport(False, 0, 19, False, sip_reported=True), R.NETWORK_FAILURE),
        (DialReport(False, 0, 34, False, sip_reported=False), R.CONGESTION),
        (DialReport(False, 3, 19, True, sip_status=180, sip_reported=True), R.NO_ANSWER),
        # Never "invalid number" unless the network said so.
        (rejected(sip=404, cause=1), R.INVALID_NUMBER),
        (rejected(sip=484, cause=28), R.INVALID_NUMBER),
        (rejected(sip=486, cause=17, rang=True), R.BUSY),
        (rejected(sip=603, cause=21, rang=True), R.REJECTED),
        (rejected(sip=408, cause=18), R.NETWORK_FAILURE),
        # Extensions RFC 3261 does not define are judged by class.
        (rejected(sip=499, cause=127), R.FAILED),
        (rejected(sip=599, cause=127), R.NETWORK_FAILURE),
        (rejected(sip=699, cause=127), R.REJECTED),
        (rejected(sip=302, cause=23), R.FAILED),
        (DialReport(True, REASON_ANSWERED, 16, True), R.ANSWERED),
        (DialReport(False, 0, None, False, channel_created=False), R.FAILED),
    ],
)
def test_given_what_the_network_said_when_classified_then_result(
    report: DialReport, expected: CallResult
) -> None:
    assert classify_call(report) is expected


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("SIP 480 Temporarily Unavailable", 480),
        ("SIP 183 Session Progress", 183),
        ("SIP 100 Trying", None),
        ("", None),
        (None, None),
        ("SIP", None),
        ("IAX2 garbage", None),
        ("SIP 9999 Odd", None),
    ],
)
def test_given_hangupcause_tech_line_when_parsed_then_status(
    line: str | None, status: int | None
) -> None:
    assert sip_status_of(line) == status


@pytest.mark.parametrize(
    ("report", "outcome_or_delay"),
    [
        # The failures: none of these may close the case as invalid_number.
        (rejected(sip=480, cause=19), POLICY.unreachable_interval),
        (rejected(sip=480, cause=20), POLICY.unreachable_interval),
        (rejected(cause=19, reason=REASON_RINGING), POLICY.failure_interval),
        (rejected(sip=183, cause=19, reason=REASON_RINGING, progress=True), POLICY.interval),
        (rejected(sip=404, cause=1), Outcome.INVALID_NUMBER),
        (rejected(sip=484, cause=28), Outcome.INVALID_NUMBER),
        (rejected(sip=603, cause=21), Outcome.DECLINED),
        (rejected(sip=486, cause=17), POLICY.busy_interval),
        (rejected(sip=600, cause=17), POLICY.busy_interval),
        (rejected(sip=503, cause=34), POLICY.failure_interval),
    ],
)
def test_given_first_attempt_when_classified_and_decided_then_retry_or_settle(
    report: DialReport, outcome_or_delay: Outcome | dt.timedelta
) -> None:
    decision = decide_retry(POLICY, classify_call(report), 1, DIALED)
    if isinstance(outcome_or_delay, Outcome):
        assert decision == GiveUp(outcome_or_delay)
    else:
        assert decision == RetryAt(DIALED + outcome_or_delay)


def test_given_phone_off_every_attempt_when_budget_used_then_unreachable_not_invalid() -> None:
    result = classify_call(rejected(sip=480, cause=20))
    assert is_phone_unreachable(result)
    assert decide_retry(POLICY, result, POLICY.max_attempts, DIALED) == GiveUp(Outcome.UNREACHABLE)
    assert not is_phone_unreachable(R.NO_ANSWER)
    assert not is_phone_unreachable(None)


def test_given_network_failures_across_residents_when_watched_then_one_page() -> None:
    watch = NetworkFailureWatch(min_residents=3, window=dt.timedelta(minutes=15))
    m = dt.timedelta(minutes=1)
    # One resident failing again and again is that resident's network: no page.
    assert not any(watch.observe("a", R.NETWORK_FAILURE, DIALED + i * m) for i in range(5))
    assert not watch.observe("b", R.NO_ANSWER, DIALED + 5 * m)
    assert not watch.observe("b", R.NETWORK_FAILURE, DIALED + 6 * m)
    assert watch.observe("c", R.NETWORK_FAILURE, DIALED + 7 * m)
    assert watch.residents() == 3
    # Paged once; quiet for the window, then it may page again.
    assert not watch.observe("d", R.NETWORK_FAILURE, DIALED + 8 * m)
    later = DIALED + 40 * m
    assert not watch.observe("a", R.NETWORK_FAILURE, later)
    assert not watch.observe("b", R.NETWORK_FAILURE, later + m)
    assert watch.observe("c", R.NETWORK_FAILURE, later + 2 * m)


def test_given_failures_spread_beyond_the_window_when_watched_then_no_page() -> None:
    watch = NetworkFailureWatch(min_residents=2, window=dt.timedelta(minutes=5))
    assert not watch.observe("a", R.NETWORK_FAILURE, DIALED)
    assert not watch.observe("b", R.NETWORK_FAILURE, DIALED + dt.timedelta(minutes=6))
