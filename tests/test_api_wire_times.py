"""Every time in a response has one shape: milliseconds and ``Z``, whatever the stored value."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from anbu.api.strict import Timestamp


class _Out(BaseModel):
    at: Timestamp
    maybe: Timestamp | None = None


def test_given_time_on_whole_second_when_serialized_then_milliseconds_are_kept() -> None:
    out = _Out(at=dt.datetime(2026, 12, 2, 13, 31, 45, tzinfo=dt.UTC))
    assert out.model_dump(mode="json") == {"at": "2026-12-02T13:31:45.000Z", "maybe": None}


def test_given_naive_or_offset_time_when_serialized_then_it_is_utc_with_z() -> None:
    naive = _Out(at=dt.datetime(2026, 12, 2, 13, 31, 45, 123456))  # SQLite hands back naive UTC
    seoul = _Out(
        at=dt.datetime(2026, 12, 2, 22, 31, 45, 5000, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    )
    assert naive.model_dump(mode="json")["at"] == "2026-12-02T13:31:45.123Z"
    assert seoul.model_dump(mode="json")["at"] == "2026-12-02T13:31:45.005Z"


def test_given_python_mode_dump_then_value_stays_a_datetime() -> None:
    at = dt.datetime(2026, 12, 2, 13, 31, 45, tzinfo=dt.UTC)
    assert _Out(at=at).model_dump()["at"] == at
