"""What one dial attempt got, told apart from what Asterisk reports.

Asterisk's OriginateResponse ``Reason`` alone cannot tell busy from congestion or rejection
(all three are Reason 0), so the classification reads the Q.850 hangup cause of the channel we
named ourselves (``ChannelId``) and whether it ever rang.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CallResult(enum.StrEnum):
    """The network-level result of one dial attempt."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    # Answered, but not by a person (anbu.domain.machine): the carrier's voicemail or
    # announcement, or an answering machine. Retried like no answer; never ok, never help.
    VOICEMAIL = "voicemail"
    MACHINE = "machine"


class HangupCause(enum.IntEnum):
    """The Q.850 causes that matter to us (Asterisk ``AST_CAUSE_*``)."""

    UNALLOCATED = 1  # number does not exist
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    NORMAL_UNSPECIFIED = 31
    CONGESTION = 34  # AST_CAUSE_NORMAL_CIRCUIT_CONGESTION
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    SWITCH_CONGESTION = 42
    REQUESTED_CHAN_UNAVAIL = 44
    BEARER_CAPABILITY_NOT_AVAIL = 58
    RECOVERY_ON_TIMER_EXPIRE = 102
    INTERWORKING = 127


# OriginateResponse Reason codes (AST_CONTROL_*): 4 = answered, 3 = ringing at timeout, 0 = hangup
# before answer, 5 = busy (rare in practice: PJSIP reports busy as 0 + cause 17), 8 = congestion.
REASON_ANSWERED = 4
REASON_RINGING = 3
REASON_BUSY = 5
REASON_CONGESTION = 8

_CAUSE_TO_RESULT: dict[int, CallResult] = {
    HangupCause.USER_BUSY: CallResult.BUSY,
    HangupCause.NO_USER_RESPONSE: CallResult.NO_ANSWER,
    HangupCause.NO_ANSWER: CallResult.NO_ANSWER,
    HangupCause.CALL_REJECTED: CallResult.REJECTED,
    HangupCause.CONGESTION: CallResult.CONGESTION,
    HangupCause.SWITCH_CONGESTION: CallResult.CONGESTION,
    HangupCause.UNALLOCATED: CallResult.UNREACHABLE,
    HangupCause.SUBSCRIBER_ABSENT: CallResult.UNREACHABLE,
    HangupCause.NUMBER_CHANGED: CallResult.UNREACHABLE,
    HangupCause.DESTINATION_OUT_OF_ORDER: CallResult.UNREACHABLE,
    HangupCause.INVALID_NUMBER_FORMAT: CallResult.UNREACHABLE,
    HangupCause.NETWORK_OUT_OF_ORDER: CallResult.UNREACHABLE,
    HangupCause.REQUESTED_CHAN_UNAVAIL: CallResult.UNREACHABLE,
    HangupCause.TEMPORARY_FAILURE: CallResult.CONGESTION,
}


@dataclass(frozen=True, slots=True)
class DialReport:
    """Everything the AMI told us about one originate, gathered by the dialer."""

    originate_success: bool
    reason: int | None
    hangup_cause: int | None
    rang: bool  # the channel reached the Ringing state at least once
    channel_created: bool = True


def classify_call(report: DialReport) -> CallResult:
    """Turn what AMI reported for one originate into a :class:`CallResult`.

    Table (measured against Asterisk 22, see docs): answered = Success/4; ring-out = Failure/3
    with cause 19 after ringing; nothing listening = Failure/3, cause 19 but never rang;
    busy/congestion/rejected = Failure/0 told apart by the hangup cause.
    """
    if report.originate_success or report.reason == REASON_ANSWERED:
        return CallResult.ANSWERED
    if not report.channel_created:
        # Unknown endpoint or no channel at all: a configuration fault on our side.
        return CallResult.FAILED
    if report.reason == REASON_BUSY:
        return CallResult.BUSY
    if report.reason == REASON_CONGESTION:
        return CallResult.CONGESTION
    cause = report.hangup_cause
    if cause in (HangupCause.NO_ANSWER, HangupCause.NO_USER_RESPONSE) or (
        report.reason == REASON_RINGING and cause is None
    ):
        # A timeout looks the same whether the phone rang or the trunk never replied: ringing tells.
        return CallResult.NO_ANSWER if report.rang else CallResult.UNREACHABLE
    if cause is not None and cause in _CAUSE_TO_RESULT:
        return _CAUSE_TO_RESULT[cause]
    return CallResult.FAILED
