"""Bulk enrolment in the console over real HTTP on SQLite and PostgreSQL: the dry run of a
500-row district sheet with 3 bad rows lists the 3 (row and Korean reason) and stores
nothing; the real run stores 497 and reports the 3; the same file again creates nobody
(idempotent on 관리번호); CSV in UTF-8 and CP949; broken files and forms are Korean errors,
never a 500."""

from __future__ import annotations

import datetime as dt
import html
import re

from sqlalchemy import func, select

from anbu.db.models import Resident
from anbu.db.models_audit import AuditEntry
from anbu.domain.audit import ActorKind, AuditAction
from anbu.domain.console import ConsoleRole
from tests.api_support import Api
from tests.console_support import (
    BAD_REASONS,
    csrf_of,
    district_csv,
    district_rows,
    district_xlsx,
    log_in,
    make_account,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def upload(api: Api, name: str, data: bytes, mode: str, ctype: str = XLSX) -> tuple[int, str]:
    page = await api.client.get("/console/residents/import")
    assert page.status_code == 200, page.text
    r = await api.client.post(
        "/console/residents/import",
        data={"csrf": csrf_of(page.text), "mode": mode},
        files={"file": (name, data, ctype)},
    )
    return r.status_code, html.unescape(r.text)


def problems_of(text: str) -> dict[int, str]:
    return {
        int(row): reason
        for row, reason in re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td></tr>", text)
    }


async def residents_in(api: Api) -> int:
    async with api.container.sessions() as s:
        return int(await s.scalar(select(func.count(Resident.id))) or 0)


async def test_given_500_rows_with_3_bad_when_dry_run_then_apply_then_497_stored_3_reported(
    api: Api,
) -> None:
    await make_account(api.container.sessions, api.clock.now(), "kim")
    assert (await log_in(api.client, "kim")).status_code == 303
    sheet = district_xlsx()

    status, text = await upload(api, "명단.xlsx", sheet, "dry")
    assert status == 200
    assert "미리 확인 결과 (저장하지 않음)" in text
    assert "새로 등록할 대상자 497명, 고칠 대상자 0명, 문제 있는 줄 3개" in text
    assert problems_of(text) == BAD_REASONS
    assert await residents_in(api) == 0

    status, text = await upload(api, "명단.xlsx", sheet, "apply")
    assert status == 200
    assert "새로 등록 497명, 고침 0명, 등록하지 않은 줄 3개" in text
    assert problems_of(text) == BAD_REASONS
    async with api.container.sessions() as s:
        stored = (await s.execute(select(Resident))).scalars().all()
        assert len(stored) == 497
        refs = {r.external_ref for r in stored}
        assert "G-0041" not in refs  # the bad rows' own references
        assert "G-0216" not in refs
        one = next(r for r in stored if r.external_ref == "G-0007")
        assert (one.name, one.phone, one.dong) == ("주민007", "01020070007", "신림동")
        created = await s.scalar(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.actor_kind == ActorKind.OFFICIAL,
                AuditEntry.action == AuditAction.CREATE,
            )
        )
        assert created == 497

    # The same sheet again, one name corrected: nobody new, the corrected one updated.
    rows = district_rows()
    rows[5][0] = "주민006고침"
    status, text = await upload(api, "명단.csv", district_csv(rows), "apply", "text/csv")
    assert status == 200
    assert "새로 등록 0명, 고침 497명, 등록하지 않은 줄 3개" in text
    assert await residents_in(api) == 497
    async with api.container.sessions() as s:
        fixed = await s.scalar(select(Resident).where(Resident.external_ref == "G-0006"))
        assert fixed is not None
        assert fixed.name == "주민006고침"


async def test_given_cp949_csv_when_dry_run_then_korean_read(api: Api) -> None:
    await make_account(api.container.sessions, api.clock.now(), "kim")
    await log_in(api.client, "kim")
    rows = [["김안부", "010-1234-5678", "신림동", "C-1"]]
    status, text = await upload(api, "a.csv", district_csv(rows, "cp949"), "dry", "text/csv")
    assert status == 200
    assert "새로 등록할 대상자 1명" in text


async def test_given_bad_files_when_uploaded_then_korean_error_never_500(api: Api) -> None:
    await make_account(api.container.sessions, api.clock.now(), "kim")
    await log_in(api.client, "kim")
    cases = [
        ("a.xlsx", b"PK\x03\x04 not really a zip \x00\x00", "XLSX 파일을 열 수 없습니다"),
        ("a.csv", "주소,메모\n서울,x\n".encode(), "전화번호, 관리번호 열이 없습니다"),
        ("a.csv", b"", "파일이 비어 있습니다"),
        ("", b"", "파일을 고르세요"),  # no file chosen: an empty part without a name
        ("a.pdf", b"%PDF-1.4", "CSV 또는 XLSX 파일만"),
        ("a.csv", b"\xff\xfe\x00\xd8", "인코딩"),
        ("a.csv", "이름,전화번호,관리번호\n".encode(), "등록할 줄이 없습니다"),
        ("n.csv", "이름,전화번호,관리번호\n김\x00,01012345678,N-1\n".encode(), "NUL"),
    ]
    for name, data, message in cases:
        status, text = await upload(api, name, data, "apply", "application/octet-stream")
        assert status == 422, (name, text)
        assert message in text, (name, text)
    assert await residents_in(api) == 0
    # A broken multipart body and a wrong CSRF token.
    r = await api.client.post(
        "/console/residents/import",
        content=b"--x\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code in (400, 403)
    assert "<html" in r.text
    page = await api.client.get("/console/residents/import")
    r = await api.client.post(
        "/console/residents/import",
        data={"csrf": "wrong", "mode": "apply"},
        files={"file": ("a.csv", district_csv(), "text/csv")},
    )
    assert r.status_code == 403
    assert await residents_in(api) == 0
    assert csrf_of(page.text)


async def test_given_analyst_when_importing_then_refused(api: Api) -> None:
    now = api.clock.now() - dt.timedelta(seconds=1)
    await make_account(api.container.sessions, now, "ana", role=ConsoleRole.ANALYST)
    await log_in(api.client, "ana")
    page = await api.client.get("/console/residents/import")
    assert page.status_code == 403
    assert "등록 권한이 없습니다" in page.text
