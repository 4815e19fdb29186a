"""Pages to the administrators who keep the service running (not the officials' alerts).

A check-in service that cannot call is worse than none: residents are "checked" and nobody
hears they were not. The failures that stop every call are a dead engine node, a trunk that
answers nobody, and a failed daily self-test; each pages the district's administrators by SMS
(the same durable outbox as the officials' alerts), besides the ERROR log line.

Pure: the words of a page and how often one may repeat. A node that flaps, or a network
failure that stays, must not send a message every pass: one page per event and subject per
``interval``; the next one after that says it is still so.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from anbu.domain.sms_text import ComposedSms, compose


class OpsEvent(enum.StrEnum):
    NODE_DOWN = "node_down"  # an engine node's AMI or trunk is gone: its calls wait or are lost
    NETWORK_FAILURE = "network_failure"  # calls to several residents got no answer from the network
    SELF_TEST_FAILED = "self_test_failed"  # the daily test call did not end with its key


_KEY_LINES: dict[OpsEvent, str] = {
    OpsEvent.NODE_DOWN: "[안부 운영] 통화 서버 {subject} 중단",
    OpsEvent.NETWORK_FAILURE: "[안부 운영] 통신망 장애 의심",
    OpsEvent.SELF_TEST_FAILED: "[안부 운영] 자가 점검 전화 실패",
}


def ops_page(event: OpsEvent, subject: str, detail: str, at: dt.datetime) -> ComposedSms:
    """The SMS (or LMS when it does not fit) of one page; ``at`` in local time."""
    key = _KEY_LINES[event].format(subject=subject)
    return compose(key, f"{at:%m-%d %H:%M} {detail}".strip())


@dataclass
class PageThrottle:
    """One page per (event, subject) per ``interval``; in memory, per process: after a restart
    the first failure pages again, which is what an administrator wants to know."""

    interval: dt.timedelta
    _last: dict[tuple[OpsEvent, str], dt.datetime] = field(default_factory=dict)

    def allow(self, event: OpsEvent, subject: str, now: dt.datetime) -> bool:
        last = self._last.get((event, subject))
        if last is not None and now - last < self.interval:
            return False
        self._last[(event, subject)] = now
        return True
