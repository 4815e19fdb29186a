"""Bulk enrolment's pure core: headers, and every row's problem in Korean with its row
number (table-driven, no database)."""

from __future__ import annotations

import pytest

from anbu.domain.enrolment import RowProblem, SheetError, check_rows, columns_of

COLUMNS = columns_of(["이름", "전화번호", "행정동", "관리번호"])


def test_given_korean_headers_in_any_order_when_mapped_then_columns_found() -> None:
    assert columns_of(["관리번호", " 연락처 ", "성명", "비고"]) == {
        "external_ref": 0,
        "phone": 1,
        "name": 2,
    }


def test_given_missing_columns_when_mapped_then_korean_error_names_them() -> None:
    with pytest.raises(SheetError, match="전화번호, 관리번호 열이 없습니다"):
        columns_of(["이름", "주소"])


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["", "01012345678", "신림동", "A1"], "이름이 비어 있습니다"),
        (["김", "", "신림동", "A1"], "전화번호가 비어 있습니다"),
        (["김", "123", "신림동", "A1"], "전화번호 '123'가 올바른 국내 번호가 아닙니다"),
        (["김", "01012345678", "신림동", ""], "관리번호가 비어 있습니다"),
        (["김" * 101, "01012345678", "", "A1"], "이름이 100자를 넘습니다"),
        (["김", "01012345678", "동" * 51, "A1"], "행정동이 50자를 넘습니다"),
        (
            ["", "x", "", ""],
            "이름이 비어 있습니다; 전화번호 'x'가 올바른 국내 번호가 아닙니다; "
            "관리번호가 비어 있습니다",
        ),
    ],
)
def test_given_bad_row_when_checked_then_problem_with_row_number(
    row: list[str], reason: str
) -> None:
    good, problems = check_rows([(7, row)], COLUMNS)
    assert good == []
    assert problems == [RowProblem(7, reason)]


def test_given_duplicate_reference_when_checked_then_second_row_reported() -> None:
    rows = [(2, ["김", "010-1234-5678", "", "A1"]), (3, ["이", "02-2123-4567", "", "A1"])]
    good, problems = check_rows(rows, COLUMNS)
    assert [g.row for g in good] == [2]
    assert good[0].phone == "01012345678"
    assert problems == [RowProblem(3, "관리번호 A1가 2행과 겹칩니다")]


def test_given_dong_scope_when_checked_then_other_dong_refused_and_blank_takes_scope() -> None:
    rows = [(2, ["김", "01012345678", "봉천동", "A1"]), (3, ["이", "01012345679", "", "A2"])]
    good, problems = check_rows(rows, COLUMNS, dong_scope="신림동")
    assert problems == [RowProblem(2, "담당 동(신림동)이 아닌 봉천동의 대상자입니다")]
    assert good[0].dong == "신림동"


def test_given_only_blank_rows_when_checked_then_sheet_error() -> None:
    with pytest.raises(SheetError, match="등록할 줄이 없습니다"):
        check_rows([(2, ["", " ", ""])], COLUMNS)
