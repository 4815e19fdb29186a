"""Bulk enrolment's edges: reading the district's CSV or XLSX into numbered rows, and storing
the rows :mod:`anbu.domain.enrolment` accepted (idempotent on the 관리번호: a row whose
reference is already enrolled in the district updates that resident, never a second one).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.api.gate import InputRefusedError, check_text
from anbu.db.models import Resident
from anbu.domain.enrolment import EnrolmentRow, RowProblem, SheetError, check_rows, columns_of

MAX_FILE_BYTES = 4 * 1024 * 1024  # under the input gate's 5 MB body limit
_CHUNK = 500  # IN (...) lists stay short on both databases


@dataclass
class Sheet:
    rows: list[EnrolmentRow]
    problems: list[RowProblem]


@dataclass
class Outcome:
    dry_run: bool
    created: int = 0
    updated: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # residents written (for the access log)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        # Excel drops a phone number's leading 0 when the column is numeric (1012345678).
        digits = str(value)
        return "0" + digits if len(digits) in (9, 10) and not digits.startswith("0") else digits
    if isinstance(value, float) and value.is_integer():
        return _text(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    # UTF-8 (with or without BOM) first; Korean Excel saves CSV as CP949.
    for encoding in ("utf-8-sig", "cp949"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise SheetError("CSV 파일의 글자 인코딩을 읽을 수 없습니다 (UTF-8 또는 CP949).")
    if "\x00" in text:  # the csv module cannot read past one; a text file never needs it
        raise SheetError("CSV 파일에 저장할 수 없는 글자(NUL)가 있습니다.")
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise SheetError("CSV 파일의 형식이 맞지 않습니다 (따옴표를 확인하세요).") from exc


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise SheetError("XLSX 파일을 열 수 없습니다 (엑셀 통합 문서인지 확인하세요).") from exc
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield [_text(v) for v in values]
    finally:
        book.close()


def read_sheet(filename: str, data: bytes, *, dong_scope: str = "") -> Sheet:
    """Blocking (openpyxl): run in a thread. Raises SheetError for a file that cannot be
    read as a whole; a bad row is a RowProblem."""
    if not data:
        raise SheetError("파일이 비어 있습니다.")
    if len(data) > MAX_FILE_BYTES:
        raise SheetError(f"파일이 {MAX_FILE_BYTES // (1024 * 1024)}MB보다 큽니다.")
    lower = filename.lower()
    if lower.endswith(".xlsx") or data[:2] == b"PK":
        lines = _xlsx_rows(data)
    elif lower.endswith((".csv", ".txt")):
        lines = _csv_rows(data)
    else:
        raise SheetError("CSV 또는 XLSX 파일만 올릴 수 있습니다.")
    numbered = enumerate(lines, start=1)
    header: list[str] | None = None
    for _, values in numbered:
        if any(v.strip() for v in values):
            header = values
            break
    if header is None:
        raise SheetError("파일에 내용이 없습니다.")
    columns = columns_of(header)
    # A NUL or a lone surrogate cannot be stored (the input gate's rule, per cell here).
    clean: list[tuple[int, list[str]]] = []
    refused: list[RowProblem] = []
    for number, values in numbered:
        try:
            for v in values:
                check_text("cell", v)
        except InputRefusedError:
            refused.append(RowProblem(number, "저장할 수 없는 글자(NUL 등)가 들어 있습니다"))
            continue
        clean.append((number, values))
    rows, problems = check_rows(clean, columns, dong_scope=dong_scope)
    return Sheet(rows, sorted(problems + refused, key=lambda p: p.row))


async def enrol(session: AsyncSession, district_id: int, sheet: Sheet, *, dry_run: bool) -> Outcome:
    """Create or update the sheet's good rows in one transaction (the caller commits);
    a dry run only counts them."""
    outcome = Outcome(dry_run=dry_run, problems=list(sheet.problems))
    refs = [r.external_ref for r in sheet.rows]
    existing: dict[str, Resident] = {}
    for i in range(0, len(refs), _CHUNK):
        found = await session.execute(
            select(Resident).where(
                Resident.district_id == district_id,
                Resident.external_ref.in_(refs[i : i + _CHUNK]),
            )
        )
        existing.update({r.external_ref: r for r in found.scalars() if r.external_ref})
    added: list[Resident] = []
    for row in sheet.rows:
        old = existing.get(row.external_ref)
        if old is None:
            outcome.created += 1
            if not dry_run:
                new = Resident(
                    district_id=district_id,
                    name=row.name,
                    phone=row.phone,
                    dong=row.dong,
                    external_ref=row.external_ref,
                )
                session.add(new)
                added.append(new)
        else:
            outcome.updated += 1
            if not dry_run:
                old.name, old.phone, old.dong = row.name, row.phone, row.dong
                outcome.ids.append(old.id)
    if not dry_run:
        await session.flush()  # assigns the new ids
        outcome.ids.extend(r.id for r in added)
    return outcome


ONE_COLUMNS = {"name": 0, "phone": 1, "dong": 2, "external_ref": 3}


def one_row(form: dict[str, str], *, dong_scope: str = "") -> Sheet:
    """The console's 'enrol one' form as a one-row sheet: the same checks, the same Korean
    reasons as a spreadsheet row (its row number is meaningless here and not shown)."""
    values = [form.get(f, "") for f in ONE_COLUMNS]
    try:
        for v in values:
            check_text("field", v)
    except InputRefusedError:
        return Sheet([], [RowProblem(1, "저장할 수 없는 글자(NUL 등)가 들어 있습니다")])
    if not any(v.strip() for v in values):
        return Sheet([], [RowProblem(1, "이름, 전화번호, 관리번호를 쓰세요")])
    rows, problems = check_rows([(1, values)], ONE_COLUMNS, dong_scope=dong_scope)
    return Sheet(rows, problems)


async def existing_ref(session: AsyncSession, district_id: int, ref: str) -> Resident | None:
    found = await session.execute(
        select(Resident).where(Resident.district_id == district_id, Resident.external_ref == ref)
    )
    return found.scalars().first()
