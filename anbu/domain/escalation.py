"""Escalation policy, pure: who is told, when, what the message says, and what a reply means.

No I/O and no clock: every function takes the time it reasons about. The service
(:mod:`escalation.service`) loads rows, asks these functions, and stores what they decide.

The rules:

- An alert is raised for a closed check-in whose outcome needs a person: ``help`` (urgent,
  긴급), ``unreachable``, ``no_response``, ``declined``, ``invalid_number``. ``ok`` needs
  nothing; ``callback`` is the scheduler's (it calls back).
- A chain is an ordered list of steps (primary -> backup -> night/holiday centre), each an
  official with on-duty hours in local time (Asia/Seoul) and an acknowledgement timeout.
  The alert goes to the first step on duty; when the timeout passes without an
  acknowledgement, to the next step on duty at that moment. If no later step is on duty the
  last step (the centre) is told anyway: an alert is never dropped because of the hour.
- The ack clock of a step starts when the gateway accepts its SMS (an official cannot read an
  SMS that is still in our outbox); a message that definitely failed moves the chain on at once.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from anbu.domain.calling_hours import SEOUL_TZ_NAME, holiday_name, zone
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, Outcome
from anbu.domain.incidents import AckChannel, OfficialRole
from anbu.domain.replies import Reply
from anbu.domain.sms_text import ComposedSms, compose, truncate_cp949

SEOUL = zone(SEOUL_TZ_NAME)
MASK = "○○"  # stands for the rest of a name, whatever its length (the length says too much)
# Six digits: a reply is accepted only from the number we messaged, and after
# ``REPLY_MAX_FAILURES`` wrong tries an incident takes no more SMS codes (the link still works),
# so a forger with the callback secret or a spoofed sender gets 5 guesses in 10**6 codes for the
# whole life of the code: a 1 in 200,000 chance (four digits with no limit: one POST listing all
# 10,000 codes was enough).
CODE_DIGITS = 6
REPLY_MAX_FAILURES = 5


class Urgency(enum.StrEnum):
    URGENT = "urgent"  # 긴급: the resident asked for help
    NORMAL = "normal"


class Finding(enum.StrEnum):
    """What the official found (recorded through the ack link)."""

    SAFE = "safe"  # 안전 확인 (by phone or otherwise)
    VISITED = "visited"  # 방문 확인
    HOSPITALISED = "hospitalised"  # 입원
    DIED = "died"  # 사망
    FALSE_ALARM = "false_alarm"  # 오경보 (e.g. away, wrong number)
    # 안전, 평소 조용함: fine, and quiet is how they live (widens their thresholds, like a false
    # alarm: anbu.domain.feedback)
    QUIET_HABIT = "quiet_habit"


FINDING_LABELS: dict[Finding, str] = {
    Finding.SAFE: "안전 확인",
    Finding.VISITED: "방문 확인",
    Finding.HOSPITALISED: "입원",
    Finding.DIED: "사망",
    Finding.FALSE_ALARM: "오경보",
    Finding.QUIET_HABIT: "안전(평소 조용함)",
}

# What the key line says happened, per outcome (short: the key line has 90 bytes).
OUTCOME_WORDS: dict[Outcome, str] = {
    Outcome.HELP: "도움요청",
    Outcome.UNREACHABLE: "전화 안받음",
    Outcome.NO_RESPONSE: "응답없음",
    Outcome.DECLINED: "통화거절",
    Outcome.INVALID_NUMBER: "결번",
}

# The timeline's words. An incident's events are read by officials in the Korean console and
# by the district's integrator; both read Korean (the SMS are Korean too), so the stored detail
# of an event is a Korean line, never an English log phrase.
URGENCY_WORDS: dict[Urgency, str] = {Urgency.URGENT: "긴급", Urgency.NORMAL: "일반"}
ROLE_WORDS: dict[OfficialRole, str] = {
    OfficialRole.DONG: "동 주민센터",
    OfficialRole.GU: "구청",
    OfficialRole.CENTRE: "야간·휴일 센터",
}
ACK_CHANNEL_WORDS: dict[AckChannel, str] = {
    AckChannel.SMS: "문자 회신",
    AckChannel.LINK: "확인 링크",
    AckChannel.CONSOLE: "콘솔",
    AckChannel.CALL: "전화 연결 수락",
}


_ALERT_OUTCOMES = {
    Outcome.UNREACHABLE: Urgency.NORMAL,
    Outcome.NO_RESPONSE: Urgency.NORMAL,
    Outcome.DECLINED: Urgency.NORMAL,
    Outcome.INVALID_NUMBER: Urgency.NORMAL,
    Outcome.HELP: Urgency.URGENT,
}


def alert_for(outcome: Outcome) -> Urgency | None:
    """The urgency of the alert a closed case with ``outcome`` raises, or None (no alert)."""
    return _ALERT_OUTCOMES.get(outcome)


# --- on-duty hours and the chain ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DutyHours:
    """When a step is on duty, in local time.

    ``days``: weekdays (Monday = 0) on which a shift *starts*; ``start``/``end``: the shift,
    ``end`` exclusive; ``end <= start`` means it runs past midnight into the next day
    (``start == end``: the whole day). ``on_holidays``: whether a shift starts on a public
    holiday (a weekday office is closed; a night centre is not).
    """

    days: frozenset[int] = frozenset(range(7))
    start: dt.time = dt.time(0, 0)
    end: dt.time = dt.time(0, 0)
    on_holidays: bool = True

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError("duty days are weekday numbers 0 (Monday) to 6, at least one")

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def _shift_day(self, day: dt.date, holidays: Callable[[dt.date], bool]) -> bool:
        return day.weekday() in self.days and (self.on_holidays or not holidays(day))

    def on_duty(
        self, at: dt.datetime, *, tz: dt.tzinfo = SEOUL, holidays: Callable[[dt.date], bool] | None
    ) -> bool:
        """Whether a shift covers ``at`` (aware; converted to ``tz``)."""
        is_holiday = holidays or (lambda _d: False)
        local = at.astimezone(tz)
        day, t = local.date(), local.time()
        if not self.overnight:
            return self.start <= t < self.end and self._shift_day(day, is_holiday)
        # Past midnight: the shift that started today, or the one that started yesterday.
        if t >= self.start and self._shift_day(day, is_holiday):
            return True
        return t < self.end and self._shift_day(day - dt.timedelta(days=1), is_holiday)


ALWAYS = DutyHours()
OFFICE_HOURS = DutyHours(frozenset(range(5)), dt.time(9, 0), dt.time(18, 0), on_holidays=False)


def korean_holiday(day: dt.date) -> bool:
    """Korean public holidays (the table in :mod:`anbu.domain.calling_hours`)."""
    return holiday_name(day) is not None


@dataclass(frozen=True, slots=True)
class Step:
    """One link of a chain: who, when on duty, and how long they have to acknowledge."""

    position: int
    official_id: str
    ack_timeout_s: int
    duty: DutyHours = ALWAYS


def next_step(
    steps: Sequence[Step],
    after: int | None,
    at: dt.datetime,
    *,
    tz: dt.tzinfo = SEOUL,
    holidays: Callable[[dt.date], bool] | None = korean_holiday,
) -> Step | None:
    """The step to tell at ``at``, after the step at position ``after`` (None: none yet).

    The first later step on duty; if none is on duty, the chain's last step (the centre) when
    it has not been told yet; None when the chain is used up.
    """
    ordered = sorted(steps, key=lambda s: s.position)
    later = [s for s in ordered if after is None or s.position > after]
    for step in later:
        if step.duty.on_duty(at, tz=tz, holidays=holidays):
            return step
    return later[-1] if later else None


# --- reply codes ----------------------------------------------------------------------------

# A reply is the code alone, optionally followed by one word: "확인" or a finding.
_REPLY_RE = re.compile(rf"^\s*([0-9]{{{CODE_DIGITS}}})(?![0-9])(?:[\s.,]*(.+?))?[\s.!]*$", re.S)
_OK_WORDS = frozenset({"확인", "확인함", "확인했습니다", "ok", "네"})
FINDING_WORDS: dict[str, Finding] = {
    **{label.replace(" ", ""): finding for finding, label in FINDING_LABELS.items()},
    **{finding.value: finding for finding in Finding},
    "안전": Finding.SAFE,
    "방문": Finding.VISITED,
}


@dataclass(frozen=True, slots=True)
class ParsedReply:
    code: str
    finding: Finding | None


def parse_reply(text: str) -> ParsedReply | None:
    """The code (and finding) of an official's reply, or None if the text is anything else:
    a text listing several codes, or a code inside a longer message, acknowledges nothing."""
    match = _REPLY_RE.match(text)
    if match is None:
        return None
    code, word = match.group(1), match.group(2)
    if word is not None:
        word = re.sub(r"\s+", "", word).lower()
    if word is None or word in _OK_WORDS:
        return ParsedReply(code, None)
    finding = FINDING_WORDS.get(word)
    return None if finding is None else ParsedReply(code, finding)


# --- the message ----------------------------------------------------------------------------


def mask_name(name: str) -> str:
    """The initial (family name) and ○○: "김안부" -> "김○○". Empty names stay anonymous."""
    stripped = name.strip()
    return (stripped[0] if stripped else "") + MASK


RESULT_WORDS: dict[CallResult, str] = {
    CallResult.NO_ANSWER: "받지 않음",
    CallResult.BUSY: "통화중",
    CallResult.CONGESTION: "망 혼잡",
    CallResult.REJECTED: "수신 거절",
    CallResult.UNREACHABLE: "전원 꺼짐/통화권 이탈",
    CallResult.INVALID_NUMBER: "없는 번호",
    CallResult.NETWORK_FAILURE: "통신망 장애",
    CallResult.FAILED: "발신 실패",
    CallResult.VOICEMAIL: "음성사서함 연결",
    CallResult.MACHINE: "자동응답기 연결",
}
# Calls that reached a machine, not the resident, are counted in a line of their own: an
# official reading "음성사서함 연결 2회" knows the phone was off or unanswered, not the
# number wrong.
MACHINE_RESULTS = (CallResult.VOICEMAIL, CallResult.MACHINE)


def machine_counts(attempts: Sequence[AttemptFacts]) -> str | None:
    """ "음성사서함 연결 2회, 자동응답기 연결 1회", or None when no call reached a machine."""
    counts = [
        (result, sum(1 for a in attempts if a.result is result)) for result in MACHINE_RESULTS
    ]
    parts = [f"{RESULT_WORDS[result]} {n}회" for result, n in counts if n]
    return ", ".join(parts) or None


REPLY_WORDS: dict[Reply, str] = {
    Reply.OK: "받음, 괜찮다고 응답",
    Reply.HELP: "받음, 도움 요청",
    Reply.CALLBACK: "받음, 나중에 전화 요청",
    Reply.NO_RESPONSE: "받음, 응답 없음",
    Reply.HUNG_UP: "받음, 바로 끊음",
}


@dataclass(frozen=True, slots=True)
class AttemptFacts:
    number: int
    status: AttemptStatus
    result: CallResult | None
    reply: Reply | None
    at: dt.datetime | None  # when it was dialed (or scheduled, if never dialed)

    def words(self) -> str:
        if self.status is AttemptStatus.UNKNOWN:
            return "결과 불명"
        if self.result is None:
            # A resident who asked for help is still on the line when the person-on-the-line
            # fallback pages the chain: the attempt has no result yet, but it was dialled.
            # ("통화중" is the busy signal's word, hence "진행 중".)
            return "통화 진행 중" if self.status is AttemptStatus.DIALING else "미발신"
        if self.result is CallResult.ANSWERED:
            return REPLY_WORDS.get(self.reply, "받음") if self.reply else "받음"
        return RESULT_WORDS.get(self.result, str(self.result))


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """Everything an alert says, gathered by the service from the case."""

    resident_name: str
    dong: str
    district_name: str
    outcome: Outcome
    urgency: Urgency
    reason: str  # why the check-in was opened (the risk engine's or the caller's words)
    attempts: tuple[AttemptFacts, ...]
    closed_at: dt.datetime
    code: str
    link: str
    step_number: int = 1  # 1 = first person told; 2+ = escalated after no acknowledgement


def _local(at: dt.datetime, tz: dt.tzinfo) -> str:
    return at.astimezone(tz).strftime("%m-%d %H:%M:%S")


def key_text(facts: AlertFacts) -> str:
    """The key line: "[안부] 긴급 김○○(신림동) 도움요청. 회신 1234" (at most 90 cp949 bytes)."""
    urgent = " 긴급" if facts.urgency is Urgency.URGENT else ""
    where = f"({facts.dong})" if facts.dong else ""
    what = OUTCOME_WORDS.get(facts.outcome, str(facts.outcome))
    return f"[안부]{urgent} {mask_name(facts.resident_name)}{where} {what}. 회신 {facts.code}"


# Keeps the whole alert within Kannel's 10 concatenated parts (UCS-2, 67 units each).
REASON_MAX_BYTES = 300
SUBJECTS = {Urgency.URGENT: "[안부] 긴급 도움요청", Urgency.NORMAL: "[안부] 안부확인 알림"}


def render_alert(facts: AlertFacts, *, tz: dt.tzinfo = SEOUL) -> ComposedSms:
    """The alert: the key line first, then (as an LMS) who, why, what the calls got, how to
    acknowledge. Times are local, to the second."""
    who = mask_name(facts.resident_name)
    place = " ".join(p for p in (facts.district_name, facts.dong) if p)
    lines = [f"대상: {who}" + (f" ({place})" if place else "")]
    reason = " / ".join(line.strip() for line in facts.reason.splitlines() if line.strip())
    lines.append(f"사유: {truncate_cp949(reason, REASON_MAX_BYTES) if reason else '-'}")
    lines.append(f"통화: {len(facts.attempts)}회 시도, {_local(facts.closed_at, tz)} 종료")
    if machines := machine_counts(facts.attempts):
        lines.append(machines)
    for a in facts.attempts:
        when = _local(a.at, tz) if a.at is not None else "-"
        lines.append(f"{a.number}) {when} {a.words()}")
    if facts.step_number > 1:
        lines.append(f"{facts.step_number}차 알림: 앞 담당자가 확인하지 않음")
    lines.append(f"확인: {facts.code} 회신 또는 {facts.link}")
    return compose(key_text(facts), "\n".join(lines), SUBJECTS[facts.urgency])


def render_digest(district_name: str, items: Sequence[str], day: dt.date) -> ComposedSms:
    """The daily device digest: a count in the key line, one line per device problem."""
    key = f"[안부] {district_name} 기기점검 {len(items)}건 ({day:%m-%d})"
    return compose(key, "\n".join(items), "[안부] 기기점검")


def digest_line(resident_name: str, dong: str, device: str, issue: str, hours: float) -> str:
    where = f"({dong})" if dong else ""
    return f"{mask_name(resident_name)}{where} {device} {issue} {hours:.0f}시간"
