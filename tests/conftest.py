"""Shared fixtures. Real components only: each fixture module fails loudly when its component
is missing (no silent skips)."""

from tests.db_fixtures import db_engine, db_url, sessions

__all__ = ["db_engine", "db_url", "sessions"]
