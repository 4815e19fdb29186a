"""Bulk enrolment from a district's spreadsheet: which rows can be enrolled, and why the
others cannot (in Korean, with the spreadsheet's own row number).

Pure: rows come in as lists of cell texts (the adapter reads CSV or XLSX), nothing is stored
here. Every problem of every row is found before anything is written, so the dry run and the
real run report the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from anbu.domain.phone import normalize_phone
from anbu.errors import InvalidPhoneNumberError, ValidationError

# Korean headers as districts write them; several spellings per column.
HEADERS: dict[str, str] = {
    "이름": "name",
    "성명": "name",
    "전화번호": "phone",
    "전화": "phone",
    "연락처": "phone",
    "휴대전화": "phone",
    "행정동": "dong",
    "동": "dong",
    "관리번호": "external_ref",
    "대상자번호": "external_ref",
    "외부참조": "external_ref",
}
REQUIRED = ("name", "phone", "external_ref")
COLUMN_WORDS = {"name": "이름", "phone": "전화번호", "dong": "행정동", "external_ref": "관리번호"}
MAX_ROWS = 20_000
MAX_NAME, MAX_DONG, MAX_REF = 100, 50, 64


class SheetError(ValidationError):
    """The sheet as a whole cannot be read (no header, a missing column, too many rows)."""


@dataclass(frozen=True, slots=True)
class EnrolmentRow:
    row: int  # the spreadsheet's row number (the header is row 1)
    name: str
    phone: str  # canonical national digits
    dong: str
    external_ref: str


@dataclass(frozen=True, slots=True)
class RowProblem:
    row: int
    reason: str


def columns_of(header: list[str]) -> dict[str, int]:
    """Map our field names to the header's column positions, or raise SheetError naming the
    missing columns in Korean."""
    found: dict[str, int] = {}
    for i, cell in enumerate(header):
        field = HEADERS.get(cell.strip().replace(" ", ""))
        if field is not None and field not in found:
            found[field] = i
    missing = [COLUMN_WORDS[f] for f in REQUIRED if f not in found]
    if missing:
        raise SheetError(
            "첫 줄에 " + ", ".join(missing) + " 열이 없습니다 "
            "(열 이름: 이름, 전화번호, 행정동, 관리번호)."
        )
    return found


def check_rows(
    rows: Iterable[tuple[int, list[str]]], columns: dict[str, int], *, dong_scope: str = ""
) -> tuple[list[EnrolmentRow], list[RowProblem]]:
    """Split numbered rows into the ones to enrol and the problems (one line per bad row,
    every reason of that row joined). ``dong_scope``: an official limited to one dong may
    enrol only there (an empty 행정동 cell means that dong)."""
    good: list[EnrolmentRow] = []
    problems: list[RowProblem] = []
    first_row_of: dict[str, int] = {}
    count = 0

    def cell(values: list[str], field: str) -> str:
        i = columns.get(field)
        return values[i].strip() if i is not None and i < len(values) else ""

    for number, values in rows:
        if not any(v.strip() for v in values):
            continue  # blank lines between blocks are common in district sheets
        count += 1
        if count > MAX_ROWS:
            raise SheetError(f"한 번에 {MAX_ROWS:,}명까지 등록할 수 있습니다.")
        reasons: list[str] = []
        name, raw_phone = cell(values, "name"), cell(values, "phone")
        dong, ref = cell(values, "dong"), cell(values, "external_ref")
        if not name:
            reasons.append("이름이 비어 있습니다")
        elif len(name) > MAX_NAME:
            reasons.append(f"이름이 {MAX_NAME}자를 넘습니다")
        phone = ""
        if not raw_phone:
            reasons.append("전화번호가 비어 있습니다")
        else:
            try:
                phone = normalize_phone(raw_phone)
            except InvalidPhoneNumberError:
                reasons.append(f"전화번호 '{raw_phone[:30]}'가 올바른 국내 번호가 아닙니다")
        if len(dong) > MAX_DONG:
            reasons.append(f"행정동이 {MAX_DONG}자를 넘습니다")
        elif dong_scope and dong and dong != dong_scope:
            reasons.append(f"담당 동({dong_scope})이 아닌 {dong}의 대상자입니다")
        if not ref:
            reasons.append("관리번호가 비어 있습니다")
        elif len(ref) > MAX_REF:
            reasons.append(f"관리번호가 {MAX_REF}자를 넘습니다")
        elif ref in first_row_of:
            reasons.append(f"관리번호 {ref}가 {first_row_of[ref]}행과 겹칩니다")
        else:
            first_row_of[ref] = number
        if reasons:
            problems.append(RowProblem(number, "; ".join(reasons)))
        else:
            good.append(EnrolmentRow(number, name, phone, dong or dong_scope, ref))
    if count == 0:
        raise SheetError("등록할 줄이 없습니다.")
    return good, problems
