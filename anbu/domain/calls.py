"""What one dial attempt got, told apart by what the network said.

The network speaks in two vocabularies: the far end's final SIP response (``480 Temporarily
Unavailable``) and the Q.850 cause Asterisk derives from it (or from a ``Reason`` header). The
cause alone is ambiguous: Asterisk 22 maps a ``480``, an INVITE nobody answered and a phone
that rang out all to cause 19 (measured against SIPp; it also ignores ``Reason: Q.850`` on a
response, so ``480`` with ``cause=20`` still reports 19). The dialer therefore reads the last
SIP status line the channel saw (``HANGUPCAUSE(chan,tech)``, reported by the engine's hangup
handler) and whether the far end ever rang (180) or sent early media (183), and this module
turns that into a :class:`CallResult` with one table per vocabulary:

- SIP status first (:data:`SIP_FINAL_RESULTS`, every 4xx-6xx RFC 3261 defines);
- then the Q.850 cause (:data:`CAUSE_RESULTS`) when no final SIP response was seen;
- a ring timeout (no final response at all) is "no answer" when the phone rang or played early
  media, and a network failure when nothing but ``100 Trying`` ever came back.

"Not reachable now" (a phone that is off or out of coverage) is its own result: retried like
no answer, never taken for a wrong number (only 404/484/604 and causes 1/22/28 are), and kept
on the attempt as the "phone unreachable" fact the risk rules can read
(:func:`is_phone_unreachable`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import deque
from dataclasses import dataclass, field


class CallResult(enum.StrEnum):
    """The network-level result of one dial attempt."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"  # rang (180) or played early media (183), nobody answered
    BUSY = "busy"  # 486 / 600, cause 17
    CONGESTION = "congestion"  # 503, causes 34 / 42: the network is full, retry soon
    REJECTED = "rejected"  # 603, cause 21: the person declined; an official follows up
    # Not reachable *now*: 480 (or causes 18/19/20) without ringing: phone off, out of coverage.
    UNREACHABLE = "unreachable"
    INVALID_NUMBER = "invalid_number"  # 404 / 484 / 604, causes 1 / 22 / 28: never redialled
    # The network between us and the phone failed: 408, 5xx, no answer to the INVITE, trunk
    # down. Repeated across residents, an administrator is paged.
    NETWORK_FAILURE = "network_failure"
    FAILED = "failed"  # our side: refused originate, our trunk config (401/407/488), IVR failure
    # Answered, but not by a person (anbu.domain.machine): the carrier's voicemail or
    # announcement, or an answering machine. Retried like no answer; never ok, never help.
    VOICEMAIL = "voicemail"
    MACHINE = "machine"


class HangupCause(enum.IntEnum):
    """The Q.850 causes Asterisk reports (``AST_CAUSE_*`` in ``causes.h``)."""

    NOT_DEFINED = 0
    UNALLOCATED = 1  # number does not exist
    NO_ROUTE_TRANSIT_NET = 2
    NO_ROUTE_DESTINATION = 3
    MISDIALLED_TRUNK_PREFIX = 5
    CHANNEL_UNACCEPTABLE = 6
    CALL_AWARDED_DELIVERED = 7
    PRE_EMPTED = 8
    NUMBER_PORTED_NOT_HERE = 14
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    REDIRECTED_TO_NEW_DESTINATION = 23
    ANSWERED_ELSEWHERE = 26
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    FACILITY_REJECTED = 29
    RESPONSE_TO_STATUS_ENQUIRY = 30
    NORMAL_UNSPECIFIED = 31
    CONGESTION = 34  # AST_CAUSE_NORMAL_CIRCUIT_CONGESTION
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    SWITCH_CONGESTION = 42
    ACCESS_INFO_DISCARDED = 43
    REQUESTED_CHAN_UNAVAIL = 44
    FACILITY_NOT_SUBSCRIBED = 50
    OUTGOING_CALL_BARRED = 52
    INCOMING_CALL_BARRED = 54
    BEARER_CAPABILITY_NOT_AUTH = 57
    BEARER_CAPABILITY_NOT_AVAIL = 58
    BEARER_CAPABILITY_NOT_IMPL = 65
    CHAN_NOT_IMPLEMENTED = 66
    FACILITY_NOT_IMPLEMENTED = 69
    INVALID_CALL_REFERENCE = 81
    INCOMPATIBLE_DESTINATION = 88
    INVALID_MSG_UNSPECIFIED = 95
    MANDATORY_IE_MISSING = 96
    MESSAGE_TYPE_NONEXIST = 97
    WRONG_MESSAGE = 98
    IE_NONEXIST = 99
    INVALID_IE_CONTENTS = 100
    WRONG_CALL_STATE = 101
    RECOVERY_ON_TIMER_EXPIRE = 102
    MANDATORY_IE_LENGTH_ERROR = 103
    PROTOCOL_ERROR = 111
    INTERWORKING = 127


# OriginateResponse Reason codes (AST_CONTROL_*): 4 = answered, 3 = "ringing" (Asterisk's
# __ast_request_and_dial reports its own timeout as 3 whether or not anything rang), 0 = hung up
# before answer, 5 = busy (rare: PJSIP reports busy as 0 + cause 17), 8 = congestion.
REASON_ANSWERED = 4
REASON_RINGING = 3
REASON_BUSY = 5
REASON_CONGESTION = 8

_R = CallResult

# Every final response RFC 3261 section 21 defines (4xx-6xx), before the call was answered.
SIP_FINAL_RESULTS: dict[int, CallResult] = {
    400: _R.FAILED,  # Bad Request: we sent something the network cannot parse
    401: _R.FAILED,  # Unauthorized: our trunk credentials
    402: _R.FAILED,  # Payment Required: our account
    # Forbidden: RFC 3398 maps Q.850 cause 21 (call rejected) to 403, and so does Asterisk. (A
    # carrier refusing *our* calls, e.g. an unregistered 발신번호, refuses all: the daily
    # self-test and the network-failure page catch that.)
    403: _R.REJECTED,
    404: _R.INVALID_NUMBER,  # Not Found
    405: _R.FAILED,  # Method Not Allowed
    406: _R.FAILED,  # Not Acceptable
    407: _R.FAILED,  # Proxy Authentication Required: our credentials
    408: _R.NETWORK_FAILURE,  # Request Timeout
    410: _R.INVALID_NUMBER,  # Gone: the number was given up
    413: _R.FAILED,  # Request Entity Too Large
    414: _R.FAILED,  # Request-URI Too Long
    415: _R.FAILED,  # Unsupported Media Type
    416: _R.FAILED,  # Unsupported URI Scheme
    420: _R.FAILED,  # Bad Extension
    421: _R.FAILED,  # Extension Required
    423: _R.FAILED,  # Interval Too Brief
    480: _R.UNREACHABLE,  # Temporarily Unavailable: phone off, out of coverage
    481: _R.NETWORK_FAILURE,  # Call/Transaction Does Not Exist
    482: _R.NETWORK_FAILURE,  # Loop Detected: the network's routing
    483: _R.NETWORK_FAILURE,  # Too Many Hops
    484: _R.INVALID_NUMBER,  # Address Incomplete
    485: _R.INVALID_NUMBER,  # Ambiguous
    486: _R.BUSY,  # Busy Here
    487: _R.NETWORK_FAILURE,  # Request Terminated (by the network: ours comes after hangup)
    488: _R.FAILED,  # Not Acceptable Here: no common codec, our trunk's codec list
    491: _R.NETWORK_FAILURE,  # Request Pending
    493: _R.FAILED,  # Undecipherable
    500: _R.NETWORK_FAILURE,  # Server Internal Error
    501: _R.FAILED,  # Not Implemented
    502: _R.NETWORK_FAILURE,  # Bad Gateway
    503: _R.CONGESTION,  # Service Unavailable
    504: _R.NETWORK_FAILURE,  # Server Time-out
    505: _R.FAILED,  # Version Not Supported
    513: _R.FAILED,  # Message Too Large
    600: _R.BUSY,  # Busy Everywhere
    603: _R.REJECTED,  # Decline
    604: _R.INVALID_NUMBER,  # Does Not Exist Anywhere
    606: _R.FAILED,  # Not Acceptable: no common media
}

_H = HangupCause

# Q.850 cause -> result, used when no final SIP response was seen (the far end was not SIP, the
# hangup handler's report was lost, or a Reason header is all there is). 18/19/20 are
# "unreachable" only when nothing rang: see classify_call.
CAUSE_RESULTS: dict[int, CallResult] = {
    _H.UNALLOCATED: _R.INVALID_NUMBER,
    _H.NUMBER_CHANGED: _R.INVALID_NUMBER,
    _H.INVALID_NUMBER_FORMAT: _R.INVALID_NUMBER,
    _H.MISDIALLED_TRUNK_PREFIX: _R.INVALID_NUMBER,
    _H.NUMBER_PORTED_NOT_HERE: _R.INVALID_NUMBER,
    _H.USER_BUSY: _R.BUSY,
    _H.NO_USER_RESPONSE: _R.UNREACHABLE,
    _H.NO_ANSWER: _R.UNREACHABLE,
    _H.SUBSCRIBER_ABSENT: _R.UNREACHABLE,
    _H.DESTINATION_OUT_OF_ORDER: _R.UNREACHABLE,
    _H.CALL_REJECTED: _R.REJECTED,
    _H.CONGESTION: _R.CONGESTION,
    _H.SWITCH_CONGESTION: _R.CONGESTION,
    _H.NO_ROUTE_TRANSIT_NET: _R.NETWORK_FAILURE,
    _H.NO_ROUTE_DESTINATION: _R.NETWORK_FAILURE,
    _H.NETWORK_OUT_OF_ORDER: _R.NETWORK_FAILURE,
    _H.TEMPORARY_FAILURE: _R.NETWORK_FAILURE,
    _H.REQUESTED_CHAN_UNAVAIL: _R.NETWORK_FAILURE,
    _H.RECOVERY_ON_TIMER_EXPIRE: _R.NETWORK_FAILURE,
    _H.PROTOCOL_ERROR: _R.NETWORK_FAILURE,
    _H.INTERWORKING: _R.NETWORK_FAILURE,
}
# Everything else (0, 16 before answer, 29, 50, 52, 57, 58, 65, 88, ...) is FAILED.

# Causes that say "the phone was alerted / could not be alerted" rather than anything about the
# number: with ringing or early media seen they mean nobody answered.
_NOT_ANSWERED_CAUSES = frozenset({_H.NO_USER_RESPONSE, _H.NO_ANSWER, _H.SUBSCRIBER_ABSENT})
# Results a ring (180) turns into "no answer": the phone was there and alerting.
_RANG_MEANS_NO_ANSWER = frozenset({_R.UNREACHABLE})


@dataclass(frozen=True, slots=True)
class DialReport:
    """Everything the AMI told us about one unanswered originate, gathered by the dialer."""

    originate_success: bool
    reason: int | None
    hangup_cause: int | None
    rang: bool  # 180 Ringing: the channel reached the Ringing state at least once
    channel_created: bool = True
    # The last SIP status the channel saw (``HANGUPCAUSE(chan,tech)``): a final 3xx-6xx, a
    # provisional (180/183: the ring timeout ended it), or None (nothing but 100 Trying).
    sip_status: int | None = None
    progress: bool = False  # 183 Session Progress / early media (ringback, 컬러링, announcement)
    # The hangup handler's report arrived: a None ``sip_status`` then means the far end never
    # sent anything but 100 Trying (unlike a missing report, where we just do not know).
    sip_reported: bool = False


def classify_call(report: DialReport) -> CallResult:
    """Turn what AMI reported for one originate into a :class:`CallResult`.

    Order: answered; no channel (our fault); a final SIP response by :data:`SIP_FINAL_RESULTS`
    (480 after a real 180 is a phone that rang out; 480 after only early media is the
    network's "전원이 꺼져 있어" announcement, so still unreachable); a ring timeout: no answer if
    it rang or played early media, else a network failure (the INVITE was never answered);
    no SIP response at all (the hangup handler says so) is a network failure whatever cause
    Asterisk made up; then the Q.850 cause by :data:`CAUSE_RESULTS`, where 18/19/20 after
    ringing or early media mean no answer.
    """
    if report.originate_success or report.reason == REASON_ANSWERED:
        return CallResult.ANSWERED
    if not report.channel_created:
        # Unknown endpoint or no channel at all: a configuration fault on our side.
        return CallResult.FAILED
    alerted = report.rang or report.progress
    status = report.sip_status
    if status is not None and status >= 300:
        result = SIP_FINAL_RESULTS.get(status) or _unlisted_status(status)
        if report.rang and result in _RANG_MEANS_NO_ANSWER:
            return CallResult.NO_ANSWER
        return result
    if report.sip_reported and status is None and not alerted:
        # Nobody on the far side said a word: the trunk is down, a TLS/TCP connection failed
        # (Asterisk then reports its own cause 34), or the INVITE went unanswered.
        return CallResult.NETWORK_FAILURE
    if report.reason == REASON_BUSY:
        return CallResult.BUSY
    if report.reason == REASON_CONGESTION:
        return CallResult.CONGESTION
    if report.reason == REASON_RINGING:
        # Our ring timeout ended it (Asterisk cancels the INVITE): nothing final was said.
        return CallResult.NO_ANSWER if alerted else CallResult.NETWORK_FAILURE
    cause = report.hangup_cause
    if cause is None:
        return CallResult.FAILED
    if cause in _NOT_ANSWERED_CAUSES and alerted:
        return CallResult.NO_ANSWER
    return CAUSE_RESULTS.get(cause, CallResult.FAILED)


def _unlisted_status(status: int) -> CallResult:
    """A final response RFC 3261 does not define (extensions): judged by its class."""
    if status >= 600:
        return CallResult.REJECTED
    if status >= 500:
        return CallResult.NETWORK_FAILURE
    return CallResult.FAILED  # 3xx redirects (we do not follow them) and unknown 4xx


def sip_status_of(tech_cause: str | None) -> int | None:
    """The status code in ``HANGUPCAUSE(chan,tech)`` ("SIP 480 Temporarily Unavailable")."""
    if not tech_cause:
        return None
    parts = tech_cause.split()
    if len(parts) >= 2 and parts[0].upper() == "SIP" and parts[1].isdigit():
        code = int(parts[1])
        # 100 Trying is hop-by-hop: it says the next proxy is alive, nothing about the phone.
        return code if 101 <= code <= 699 else None
    return None


def is_phone_unreachable(result: CallResult | None) -> bool:
    """The "phone unreachable" observation: the network said the phone is off or out of
    coverage. A phone off for days is a crisis signal for the risk rules."""
    return result is CallResult.UNREACHABLE


@dataclass(slots=True)
class NetworkFailureWatch:
    """Pages an administrator when network failures repeat *across residents*.

    One resident's phone network failing is that resident's problem (retried at the failure
    interval); ``min_residents`` different residents failing within ``window`` means the trunk
    or the carrier is broken for everyone. After a page, quiet for ``window``.
    Pure: times come in; the caller pages.
    """

    min_residents: int = 3
    window: dt.timedelta = dt.timedelta(minutes=15)
    _seen: deque[tuple[dt.datetime, str]] = field(default_factory=deque)
    _paged_at: dt.datetime | None = None

    def observe(self, resident_id: str, result: CallResult, at: dt.datetime) -> bool:
        """Record one attempt's result; True when the administrator should be paged now."""
        while self._seen and at - self._seen[0][0] > self.window:
            self._seen.popleft()
        if result is not CallResult.NETWORK_FAILURE:
            return False
        self._seen.append((at, resident_id))
        if self._paged_at is not None and at - self._paged_at <= self.window:
            return False
        if len({rid for _, rid in self._seen}) >= self.min_residents:
            self._paged_at = at
            return True
        return False

    def residents(self) -> int:
        """How many different residents failed within the window (for the page's text)."""
        return len({rid for _, rid in self._seen})
