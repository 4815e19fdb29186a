"""Korean SMS length rules: cp949 bytes, SMS vs LMS, the 90-byte key line, UCS-2 parts."""

from __future__ import annotations

import pytest

from anbu.domain.sms_text import (
    LMS_MAX_BYTES,
    SMS_MAX_BYTES,
    SmsKind,
    choose_kind,
    compose,
    cp949_len,
    fits_sms,
    key_line,
    truncate_cp949,
    ucs2_parts,
    unencodable_chars,
)
from anbu.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("abc 123", 7),
        ("가", 2),
        ("안녕하세요", 10),
        ("똠", 2),  # outside KS X 1001's 2,350: euc-kr would count 8
        ("쀍", 2),
        ("김철수님 010-1234-5678", 8 + 14),
        ("…", 2),
        ("😀", 2),  # not in cp949: counted as 2, never raises
        ("줄\n바꿈", 7),
    ],
)
def test_given_text_when_counting_cp949_then_bytes_match_korean_carriers(
    text: str, expected: int
) -> None:
    assert cp949_len(text) == expected


def test_given_syllable_outside_ks_x_1001_when_counting_then_euc_kr_would_have_been_wrong() -> None:
    # Why the codec matters: Python's euc-kr makes an 8-byte sequence of "똠".
    assert len("똠".encode("euc_kr")) == 8
    assert cp949_len("똠") == 2


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("가" * 45, SmsKind.SMS),  # 90 bytes
        ("가" * 44 + "ab", SmsKind.SMS),
        ("가" * 45 + "a", SmsKind.LMS),  # 91 bytes
        ("a" * 90, SmsKind.SMS),
        ("a" * 91, SmsKind.LMS),
        ("가" * 1000, SmsKind.LMS),  # 2,000 bytes
    ],
)
def test_given_text_length_when_choosing_kind_then_sms_up_to_90_bytes_else_lms(
    text: str, kind: SmsKind
) -> None:
    assert choose_kind(text) is kind
    assert fits_sms(text) is (kind is SmsKind.SMS)


def test_given_text_over_2000_bytes_when_choosing_kind_then_refused() -> None:
    with pytest.raises(ValidationError, match="2000"):
        choose_kind("가" * 1000 + "a")


def test_given_emoji_when_listing_unencodable_then_each_distinct_char_once() -> None:
    assert unencodable_chars("확인 😀 감사 😀 ✅") == ["😀", "✅"]
    assert unencodable_chars("정상 문자") == []


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("가나다라", 8, "가나다라"),
        ("가나다라", 7, "가나…"),  # 가나 (4) + … (2) = 6; 다 would make 8
        ("abc가나", 5, "abc…"),
        ("가나다", 1, ""),  # no room even for the ellipsis: cut without it
        ("가나다", 2, "…"),
    ],
)
def test_given_budget_when_truncating_then_cut_on_character_boundary_with_ellipsis(
    text: str, limit: int, expected: str
) -> None:
    cut = truncate_cp949(text, limit)
    assert cut == expected
    assert cp949_len(cut) <= limit


@pytest.mark.parametrize(
    ("units", "parts"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (158, 3), (670, 10), (671, 11)],
)
def test_given_ucs2_length_when_counting_parts_then_70_single_and_67_per_part(
    units: int, parts: int
) -> None:
    assert ucs2_parts("가" * units) == parts


def test_given_astral_character_when_counting_parts_then_it_takes_two_ucs2_units() -> None:
    assert ucs2_parts("가" * 69 + "😀") == 2


def test_given_multiline_key_when_making_key_line_then_one_line_of_at_most_90_bytes() -> None:
    line, cut = key_line("[안부확인] 김철수님\n미응답 2회")
    assert (line, cut) == ("[안부확인] 김철수님 미응답 2회", False)
    long_line, long_cut = key_line("가" * 60)
    assert long_cut is True
    assert cp949_len(long_line) <= SMS_MAX_BYTES
    assert long_line.endswith("…")


def test_given_short_alert_when_composing_then_sms_without_subject() -> None:
    composed = compose("[안부] 김철수(종로) 미응답 2회. 회신 1=확인", "")
    assert composed.kind is SmsKind.SMS
    assert composed.subject is None
    assert composed.text == "[안부] 김철수(종로) 미응답 2회. 회신 1=확인"
    assert composed.truncated is False


def test_given_long_alert_when_composing_then_lms_with_key_line_first_and_short_subject() -> None:
    key = "[안부확인 필요] 김철수님(종로구 혜화동) 전화 2회 미응답, 방문 요청. 회신 1=확인"
    details = "전력 사용 50시간 변화 없음.\n" * 10
    composed = compose(key, details)
    assert composed.kind is SmsKind.LMS
    assert composed.text.startswith(key + "\n전력")
    assert composed.subject is not None
    assert cp949_len(composed.subject) <= 40
    assert composed.subject.startswith("[안부확인 필요]")
    assert composed.truncated is False


def test_given_huge_details_when_composing_then_lms_cut_to_2000_bytes_and_flagged() -> None:
    composed = compose("[안부] 방문 요청", "가" * 1500, subject="방문 요청")
    assert composed.kind is SmsKind.LMS
    assert cp949_len(composed.text) <= LMS_MAX_BYTES
    assert composed.text.startswith("[안부] 방문 요청\n")
    assert composed.subject == "방문 요청"
    assert composed.truncated is True


def test_given_blank_key_when_composing_then_refused() -> None:
    with pytest.raises(ValidationError):
        compose("  \n ", "details")
