"""Shared fixtures. Real components only: each fixture module fails loudly when its component
is missing (no silent skips)."""

from tests.db_fixtures import db_engine, db_url, sessions
from tests.fixtures_kannel import (
    callback_server,
    kannel,
    kannel_factory,
    kannel_sender,
    solapi_server,
)

__all__ = [
    "callback_server",
    "db_engine",
    "db_url",
    "kannel",
    "kannel_factory",
    "kannel_sender",
    "sessions",
    "solapi_server",
]
