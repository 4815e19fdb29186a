"""The effectiveness report on a seeded district whose right answers are known by construction
(both databases), its exports read back (CSV, XLSX with openpyxl, HTML, PDF through pdftoppm),
and the command line's one-line messages."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_escalation import Incident, OutboxMessage, ResidentFinding
from anbu.db.models_signals import (
    Device,
    DeviceTask,
    MonitoringProfile,
    RiskAssessment,
    SignalEvent,
)
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.escalation import Finding, Urgency
from anbu.domain.incidents import DeliveryStatus, IncidentStatus, OutboxStatus
from anbu.domain.risk import (
    DeviceIssueKind,
    DeviceKind,
    Level,
    RiskCategory,
    SignalKind,
    TaskStatus,
    Tier,
)
from anbu.domain.sms_text import SmsKind
from anbu.report import Period, build_report
from anbu.report.figures import AlertRow, ReportInput, compute, percentile, within_text
from anbu.report.render import render, to_csv, to_xlsx

KST = dt.timezone(dt.timedelta(hours=9))
PERIOD = Period(dt.date(2026, 10, 1), dt.date(2026, 11, 30))


def at(month: int, day: int, hour: int = 10, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, 0, second, tzinfo=KST).astimezone(dt.UTC)


def s(t: dt.datetime, seconds: float) -> dt.datetime:
    return t + dt.timedelta(seconds=seconds)


def evidence(*channels: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "channels": [{"channel": c, "status": st, "severe": sev} for c, st, sev in channels],
        "device_issues": [],
    }


class Seed:
    """Builds rows with every field the report reads set explicitly."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:04d}"

    async def resident(
        self, district: District, dong: str, tier: Tier, *devices: DeviceKind
    ) -> Resident:
        r = Resident(id=self._id("r"), district_id=district.id, name="주민", phone="01099990001",
                     dong=dong)  # fmt: skip
        self.s.add(r)
        await self.s.flush()
        self.s.add(
            MonitoringProfile(
                resident_id=r.id, tier=tier, category=RiskCategory.MEDIUM,
                consent_call_records=True, consent_app=True, consent_iot=True,
            )
        )  # fmt: skip
        for kind in devices:
            self.s.add(Device(id=self._id("d"), device_id=self._id("dev-"), resident_id=r.id,
                              district_id=r.district_id, kind=kind,
                              created_at=at(9, 1)))  # fmt: skip
        return r

    def signal(self, r: Resident, source: str, when: dt.datetime) -> None:
        self.s.add(SignalEvent(source=source, event_id=self._id("e"), resident_id=r.id,
                               kind=SignalKind.CALL, at=when, received_at=when))  # fmt: skip

    def checkin(
        self,
        r: Resident,
        source: CheckinSource,
        when: dt.datetime,
        outcome: Outcome | None,
        attempts: list[tuple[CallResult, int]],
    ) -> Checkin:
        c = Checkin(
            id=self._id("c"), resident_id=r.id, source=source, reason="seed", created_at=when,
            status=CheckinStatus.PENDING if outcome is None else CheckinStatus.COMPLETED,
            outcome=outcome,
        )  # fmt: skip
        self.s.add(c)
        for i, (result, cause) in enumerate(attempts, 1):
            self.s.add(
                CallAttempt(
                    id=self._id("a"), checkin_id=c.id, attempt_no=i, number=r.phone,
                    status=AttemptStatus.FINISHED, result=result, hangup_cause=cause,
                    scheduled_for=s(when, 600 * i), ended_at=s(when, 600 * i + 30),
                )
            )  # fmt: skip
        return c

    def assessment(
        self, r: Resident, level: Level, previous: Level, when: dt.datetime,
        ev: dict[str, Any], checkin: Checkin | None = None,
    ) -> None:  # fmt: skip
        self.s.add(RiskAssessment(id=self._id("ra"), resident_id=r.id, level=level,
                                  previous_level=previous, evidence=ev, explanation="",
                                  checkin_id=checkin.id if checkin else None,
                                  assessed_at=when))  # fmt: skip

    async def incident(
        self,
        c: Checkin,
        district: District,
        opened: dt.datetime,
        urgency: Urgency,
        messages: list[tuple[float, float, float | None]],  # created, sent, delivered (s)
        acked_after: float | None,
        step: int,
    ) -> Incident:
        inc = Incident(
            id=self._id("i"), checkin_id=c.id, resident_id=c.resident_id,
            district_id=district.id, outcome=c.outcome, urgency=urgency,
            status=IncidentStatus.OPEN if acked_after is None else IncidentStatus.ACKNOWLEDGED,
            code="1234", step_position=step, step_count=step,
            case_closed_at=s(opened, -2), opened_at=opened,
            acknowledged_at=None if acked_after is None else s(opened, acked_after),
        )  # fmt: skip
        self.s.add(inc)
        await self.s.flush()
        for created, sent, delivered in messages:
            m = OutboxMessage(
                id=self._id("m"), reference=self._id("ref"), incident_id=inc.id, to="01099990001",
                sender="0212345678", kind=SmsKind.SMS, text="경보", status=OutboxStatus.SENT,
                next_attempt_at=s(opened, created), created_at=s(opened, created),
                sent_at=s(opened, sent),
                delivery=DeliveryStatus.DELIVERED if delivered is not None else None,
                delivery_at=s(opened, delivered) if delivered is not None else None,
            )  # fmt: skip
            self.s.add(m)
            inc.current_message_id = m.id  # the last message is the step told last
        return inc

    def finding(self, inc: Incident, finding: Finding, when: dt.datetime) -> None:
        self.s.add(ResidentFinding(id=self._id("f"), resident_id=inc.resident_id,
                                   incident_id=inc.id, finding=finding, at=when))  # fmt: skip

    def task(self, r: Resident, opened: dt.datetime, resolved: dt.datetime | None) -> None:
        dev = Device(id=self._id("d"), device_id=self._id("dev-"), resident_id=r.id,
                     district_id=r.district_id, kind=DeviceKind.PLUG, active=False,
                     created_at=at(9, 1))  # fmt: skip
        self.s.add(dev)
        self.s.add(
            DeviceTask(id=self._id("t"), device_pk=dev.id, resident_id=r.id,
                       kind=DeviceIssueKind.STALE,
                       status=TaskStatus.RESOLVED if resolved else TaskStatus.OPEN,
                       detail="", opened_at=opened, resolved_at=resolved)
        )  # fmt: skip


async def seed_district(sessions: async_sessionmaker[AsyncSession], *, noise: bool = True) -> None:
    """District 11620: 6 residents in 신림동, 2 in 봉천동; district 11680 is noise (left out
    with ``noise=False``: a deployment serving one district, read without a resident filter)."""
    async with sessions() as session:
        d = District(code="11620", name="관악구")
        other = District(code="11680", name="강남구")
        session.add_all([d, other])
        await session.flush()
        x = Seed(session)
        r1 = await x.resident(d, "신림동", Tier.CALLS)
        r2 = await x.resident(d, "신림동", Tier.CALLS)
        for _ in range(2):
            await x.resident(d, "신림동", Tier.APP, DeviceKind.APP)
        r5 = await x.resident(d, "신림동", Tier.IOT, DeviceKind.PLUG)
        r6 = await x.resident(d, "신림동", Tier.IOT, DeviceKind.PLUG)
        r7 = await x.resident(d, "봉천동", Tier.IOT, DeviceKind.PLUG)
        r8 = await x.resident(d, "봉천동", Tier.IOT, DeviceKind.PLUG)

        for when in (at(10, 2), at(10, 3), at(10, 31, 23)):
            x.signal(r1, "cdr", when)
        x.signal(r5, "plug", at(10, 4))
        x.signal(r5, "plug", at(10, 5))
        x.signal(r2, "cdr", at(11, 30, 23))
        x.signal(r1, "cdr", at(9, 30, 23))  # before the period (KST)
        x.signal(r1, "cdr", at(12, 1, 0))  # after it

        c1 = x.checkin(r1, CheckinSource.SIGNAL, at(10, 10), Outcome.OK,
                       [(CallResult.ANSWERED, 16)])  # fmt: skip
        c2 = x.checkin(r2, CheckinSource.SIGNAL, at(10, 12), Outcome.UNREACHABLE,
                       [(CallResult.NO_ANSWER, 19), (CallResult.NO_ANSWER, 19),
                        (CallResult.UNREACHABLE, 20)])  # fmt: skip
        c3 = x.checkin(r5, CheckinSource.API, at(10, 15), Outcome.HELP,
                       [(CallResult.ANSWERED, 16)])  # fmt: skip
        c4 = x.checkin(r6, CheckinSource.SIGNAL, at(11, 3), Outcome.NO_RESPONSE,
                       [(CallResult.ANSWERED, 16)])  # fmt: skip
        x.checkin(r7, CheckinSource.ROUTINE, at(11, 5), Outcome.OK,
                  [(CallResult.BUSY, 17), (CallResult.ANSWERED, 16)])  # fmt: skip
        c6 = x.checkin(r8, CheckinSource.SIGNAL, at(11, 20), None, [])
        x.checkin(r1, CheckinSource.SIGNAL, at(12, 1, 1), Outcome.OK,
                  [(CallResult.ANSWERED, 16)])  # after the period  # fmt: skip

        x.assessment(r1, Level.CAUTION, Level.NONE, at(10, 10), evidence(("calls", "quiet", False)),
                     c1)  # fmt: skip
        x.assessment(r2, Level.SERIOUS, Level.NONE, at(10, 12),
                     evidence(("calls", "quiet", True), ("power", "low", False)), c2)  # fmt: skip
        x.assessment(r2, Level.NONE, Level.SERIOUS, at(10, 25), evidence())  # a fall: no rise
        x.assessment(r6, Level.CAUTION, Level.NONE, at(11, 3), evidence(("light", "quiet", False)),
                     c4)  # fmt: skip
        x.assessment(r8, Level.CONCERN, Level.NONE, at(11, 10), evidence(("calls", "low", False)))
        x.assessment(r8, Level.CAUTION, Level.CONCERN, at(11, 20),
                     evidence(("calls", "quiet", False)), c6)  # fmt: skip

        i2 = await x.incident(c2, d, at(10, 12, 16), Urgency.NORMAL, [(1, 5, 8)], 35, 1)
        i3 = await x.incident(c3, d, at(10, 15, 11), Urgency.URGENT,
                              [(1, 3, None), (598, 600, 610)], 700, 2)  # fmt: skip
        await x.incident(c4, d, at(11, 3, 12), Urgency.NORMAL, [(1, 2, None)], None, 1)
        x.finding(i2, Finding.FALSE_ALARM, at(10, 20))
        x.finding(i3, Finding.HOSPITALISED, at(10, 21))

        x.task(r5, at(10, 5, 8), at(10, 5, 14))
        x.task(r6, at(11, 2), None)

        if noise:  # another district's resident, with a row of every kind
            z = await x.resident(other, "역삼동", Tier.IOT, DeviceKind.PLUG)
            x.signal(z, "cdr", at(10, 2))
            cz = x.checkin(z, CheckinSource.SIGNAL, at(10, 10), Outcome.UNREACHABLE,
                           [(CallResult.NO_ANSWER, 19)])  # fmt: skip
            x.assessment(z, Level.SERIOUS, Level.NONE, at(10, 10),
                         evidence(("calls", "quiet", True)), cz)  # fmt: skip
            iz = await x.incident(cz, other, at(10, 10, 12), Urgency.NORMAL, [(1, 2, 3)], 10, 1)
            x.finding(iz, Finding.DIED, at(10, 21))
            x.task(z, at(10, 5), None)
        await session.commit()


@pytest.mark.parametrize("noise", [True, False], ids=["two_districts", "one_district"])
async def test_given_a_seeded_district_when_reported_then_every_figure_is_as_constructed(
    sessions: async_sessionmaker[AsyncSession], noise: bool
) -> None:
    await seed_district(sessions, noise=noise)
    fig = await build_report(sessions, "11620", PERIOD, ack_target_s=60)

    assert fig["residents"] == {
        "total": 8,
        "by_tier": {"calls": 2, "app": 2, "iot": 4},
        "by_source": {"call_records": 8, "app": 2, "plug": 4},
    }
    assert fig["signals"] == {"total": 6, "by_source": {"cdr": 4, "plug": 2}}
    assert fig["levels"]["residents_reaching_level"] == {
        "caution": 3, "serious": 1, "none": 1, "concern": 1,
    }  # fmt: skip
    assert fig["levels"]["rises_by_level"] == {"caution": 3, "serious": 1, "concern": 1}

    c = fig["checkins"]
    assert c["total"] == 6
    assert c["by_source"] == {"signal": 4, "api": 1, "routine": 1}
    assert c["by_trigger"] == {
        "calls:quiet": 2, "calls:quiet_long": 1, "light:quiet": 1, "power:low": 1,
    }  # fmt: skip
    assert c["outcomes"] == {
        "ok": 2, "help": 1, "no_response": 1, "open": 1, "unreachable": 1,
    }  # fmt: skip
    assert (c["cleared_by_call"], c["cleared_share"]) == (2, 0.4)
    assert (c["escalated"], c["escalated_share"]) == (3, 0.5)
    assert (c["unreachable"], c["unreachable_share"]) == (1, 0.2)

    calls = fig["calls"]
    assert (calls["attempts"], calls["answered"], calls["answer_rate"]) == (8, 4, 0.5)
    assert calls["results"] == {"answered": 4, "no_answer": 2, "busy": 1, "unreachable": 1}
    assert calls["causes"] == {"16": 4, "19": 2, "17": 1, "20": 1}
    assert calls["attempts_per_case"] == {"mean": 1.6, "distribution": {"1": 3, "2": 1, "3": 1}}
    assert calls["phone_off_share"] == 0.125
    assert calls["voicemail_share"] == 0.0  # the seed has no voicemail or machine result

    a = fig["alerts"]
    assert (a["alerts"], a["urgent"], a["acknowledged"]) == (3, 1, 2)
    assert a["to_ack"]["p50_s"] == pytest.approx((35 + 700) / 2)
    assert a["to_ack_by_step"] == {
        "1": {"n": 1, "p50_s": 30.0, "p90_s": 30.0, "max_s": 30.0},
        "2": {"n": 1, "p50_s": 100.0, "p90_s": 100.0, "max_s": 100.0},
    }
    assert a["to_gateway"]["n"] == 4
    assert a["to_gateway"]["p50_s"] == 2.0  # 4, 2, 2, 1 seconds
    assert a["to_delivery"]["n"] == 2
    assert a["to_delivery"]["p50_s"] == 9.5  # 7 and 12 seconds
    assert a["case_to_alert"]["p50_s"] == 2.0
    assert a["ack_within_target_share"] == 0.3333  # one of three alerts within 60 s
    assert a["ack_within_target"] == "33.3% within 60 s"

    f = fig["findings"]
    assert f["by_kind"] == {"false_alarm": 1, "hospitalised": 1}
    assert (f["true_alarms"], f["true_alarm_rate"]) == (1, 0.5)
    assert f["true_alarm_rate_by_source"] == {
        "api": {"findings": 1, "true": 1, "rate": 1.0},
        "calls": {"findings": 1, "true": 0, "rate": 0.0},
        "power": {"findings": 1, "true": 0, "rate": 0.0},
    }
    assert f["true_alarm_rate_by_rule"] == {
        "api": {"findings": 1, "true": 1, "rate": 1.0},
        "low": {"findings": 1, "true": 0, "rate": 0.0},
        "quiet_long": {"findings": 1, "true": 0, "rate": 0.0},
    }

    t = fig["device_tasks"]
    assert (t["opened"], t["resolved"], t["still_open"]) == (2, 1, 1)
    assert t["time_to_fix_h"] == {"n": 1, "p50": 6.0, "p90": 6.0}

    oct_, nov = fig["months"]
    assert (oct_["month"], nov["month"]) == ("2026-10", "2026-11")
    assert (oct_["signals"], nov["signals"]) == (5, 1)
    assert (oct_["checkins"], nov["checkins"]) == (3, 3)
    assert (oct_["attempts"], nov["attempts"]) == (5, 3)
    assert (oct_["alerts"], nov["alerts"]) == (2, 1)
    assert (oct_["escalated"], nov["escalated"]) == (2, 1)
    assert (oct_["findings"], oct_["true_alarms"], nov["findings"]) == (2, 1, 0)
    assert (oct_["device_tasks"], nov["device_tasks"]) == (1, 1)

    # One dong: 신림동 holds r1..r6 (c1..c4 and their alerts).
    dong = await build_report(sessions, "11620", PERIOD, dong="신림동", ack_target_s=60)
    assert dong["checkins"]["total"] == 4
    assert dong["residents"]["total"] == 6
    assert dong["alerts"]["alerts"] == 3
    assert dong["signals"]["total"] == 6
    # One month only.
    nov_only = await build_report(sessions, "11620", Period(dt.date(2026, 11, 1),
                                                            dt.date(2026, 11, 30)))  # fmt: skip
    assert nov_only["checkins"]["total"] == 3
    assert [m["month"] for m in nov_only["months"]] == ["2026-11"]


async def test_given_the_report_when_exported_then_csv_xlsx_and_html_read_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await seed_district(sessions)
    fig = await build_report(sessions, "11620", PERIOD, ack_target_s=60)

    rows = list(csv.reader(io.StringIO(to_csv(fig).decode("utf-8-sig"))))
    assert rows[0] == ["section", "item", "value"]
    table = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert table[("calls", "answer_rate")] == "0.5"
    assert table[("months", "2026-11.checkins")] == "3"
    assert table[("alerts", "ack_within_target")] == "33.3% within 60 s"

    wb = openpyxl.load_workbook(io.BytesIO(to_xlsx(fig)))
    assert wb.sheetnames == [
        "요약", "월별", "주민", "신호", "위험 단계", "안부 확인", "통화", "경보", "현장 확인",
        "기기 점검",
    ]  # fmt: skip
    months = list(wb["월별"].iter_rows(values_only=True))
    assert months[0][:3] == ("월", "신호", "안부 확인")
    assert months[1][:3] == ("2026-10", 5, 3)
    assert months[2][:3] == ("2026-11", 1, 3)
    calls = {r[2]: r[1] for r in wb["통화"].iter_rows(min_row=2, values_only=True)}
    assert calls["answer_rate"] == 0.5
    assert calls["attempts_per_case.mean"] == 1.6
    summary = {r[0]: r[1] for r in wb["요약"].iter_rows(values_only=True)}
    assert summary["목표 시간 내 확인"] == "33.3% within 60 s"

    page = (await render(fig, "html")).decode()
    assert page.count("<svg") >= 10
    assert "안부 효과 보고서" in page
    assert "관악구(11620) 2026-10-01 ~ 2026-11-30" in page
    assert "33.3% within 60 s" in page
    json.loads(await render(fig, "json"))


async def test_given_the_report_when_printed_to_pdf_then_pdftoppm_renders_each_page(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await seed_district(sessions)
    fig = await build_report(sessions, "11620", PERIOD, ack_target_s=60)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(await render(fig, "pdf"))
    info = await _run("pdfinfo", str(pdf))
    pages = int(next(ln.split()[-1] for ln in info.splitlines() if ln.startswith("Pages:")))
    assert pages >= 2  # the report runs over more than one A4/Letter page
    await _run("pdftoppm", "-r", "30", "-gray", str(pdf), str(tmp_path / "page"))
    images = sorted(await asyncio.to_thread(lambda: list(tmp_path.glob("page-*.pgm"))))
    assert len(images) == pages
    for image in images:
        width, height, pixels = _pgm(await asyncio.to_thread(image.read_bytes))
        dark = sum(1 for p in pixels if p < 128)
        assert dark > 0.002 * width * height, f"{image.name} is blank"
    text = await _run("pdftotext", "-layout", str(pdf), "-")
    assert "안부 효과 보고서" in text  # Korean text made it through (fonts embedded)
    assert "33.3% within 60 s" in text


async def _run(*cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _pgm(data: bytes) -> tuple[int, int, bytes]:
    """A binary PGM (P5) image: width, height and the 8-bit pixels."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5"
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[pos + 1 : pos + 1 + width * height]


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANBU_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "anbu.cli", "report", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_given_bad_arguments_when_reporting_then_one_line_messages(
    sessions: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
) -> None:
    await seed_district(sessions)
    cases = [
        (["--district", "11620", "--from", "2026-13-01", "--to", "2026-11-30"],
         "anbu report: --from '2026-13-01' is not a date (YYYY-MM-DD)"),
        (["--district", "11620", "--from", "2026-11-30", "--to", "2026-10-01"],
         "anbu report: --to 2026-10-01 is before --from 2026-11-30"),
        (["--district", "99999", "--from", "2026-10-01", "--to", "2026-11-30"],
         "anbu report: district '99999' not found"),
        (["--district", "11620", "--dong", "없는동", "--from", "2026-10-01", "--to", "2026-11-30"],
         "anbu report: no resident of district 11620 in dong '없는동'"),
        (["--district", "11620", "--from", "2026-10-01", "--to", "2026-11-30", "--format", "xlsx"],
         "anbu report: --format xlsx needs --out FILE"),
    ]  # fmt: skip
    # One process each, all at once: each run is mostly the interpreter starting.
    runs = await asyncio.gather(*(asyncio.to_thread(_cli, db_url, *args) for args, _ in cases))
    for (_, message), done in zip(cases, runs, strict=True):
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == message
        assert done.stdout == ""

    out = tmp_path / "report.xlsx"
    done = await asyncio.to_thread(
        _cli, db_url, "--district", "11620", "--from", "2026-10-01", "--to", "2026-11-30",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    wb = openpyxl.load_workbook(out)
    assert wb["월별"]["A2"].value == "2026-10"


def test_given_no_alerts_when_computed_then_rates_are_none_not_errors() -> None:
    fig = compute(ReportInput("11620", "관악구", None, PERIOD, {}, {}, {}, {}, [], [], [], [], []))
    assert fig["calls"]["answer_rate"] is None
    assert fig["alerts"]["ack_within_target"] == "no alerts (target 600 s)"
    assert fig["findings"]["true_alarm_rate"] is None
    assert fig["months"] == []


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([], 50, None), ([5.0], 90, 5.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([0.0, 10.0], 90, 9.0)],
)
def test_percentile_interpolates(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


@pytest.mark.parametrize(
    ("share", "target", "text"),
    [(0.975, 60, "97.5% within 60 s"), (1.0, 600, "100% within 600 s"),
     (None, 60, "no alerts (target 60 s)")],
)  # fmt: skip
def test_within_text_is_the_alarm_centres_form(
    share: float | None, target: float, text: str
) -> None:
    assert within_text(share, target) == text


def test_an_unacknowledged_alert_counts_as_late() -> None:
    t = at(10, 1)
    alerts = [AlertRow(t, t, "normal", s(t, 30), 1, t), AlertRow(t, t, "normal", None, 1, t)]
    fig = compute(ReportInput("1", "x", None, PERIOD, {}, {}, {}, {}, [], alerts, [], [], [], 60))
    assert fig["alerts"]["ack_within_target"] == "50% within 60 s"
