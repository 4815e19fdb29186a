"""Request field types that take what the document says and nothing else.

Pydantic's lax mode reads ``0``/``1`` as booleans, ``true`` as the integer 1, ``"5"`` as a
number and ``0.5`` as a time (Unix seconds). An integrator whose ``false`` becomes a setting it
did not mean finds out too late, so request bodies use these (FastAPI validates them in Python
mode, where Pydantic's ``strict`` would also refuse ISO strings for times and enum values).

Responses use :data:`Timestamp`: one shape for every time, always with milliseconds and ``Z``.
Pydantic drops the fraction when it is zero, so one call in a thousand (times are kept to the
millisecond) came out as ``...:45Z`` beside ``...:45.123Z``; a client reading one shape broke.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
)


def _iso_time(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not value[:4].isdigit() or value[4:5] != "-":
        raise ValueError("must be an ISO 8601 time with a UTC offset, e.g. 2026-12-01T09:00+09:00")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_time)]


def _wire_time(value: dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[dt.datetime, PlainSerializer(_wire_time, return_type=str, when_used="json")]

__all__ = ["IsoDatetime", "StrictBool", "StrictFloat", "StrictInt", "Timestamp"]
