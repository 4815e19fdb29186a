"""Shared fixtures. Real components only: each fixture module fails loudly when its component
is missing (no silent skips)."""

import logging
from collections.abc import Iterator

import pytest

from tests.api_support import api
from tests.db_fixtures import db_engine, db_url, migrated_templates, pg_database, sessions
from tests.fixtures_asterisk import (
    agi_port,
    asterisk_install,
    asterisk_pair,
    bench_prompt,
    engine_ami,
    make_asterisk_pair,
)
from tests.fixtures_kannel import (
    callback_server,
    kannel,
    kannel_factory,
    kannel_sender,
    solapi_server,
)
from tests.fixtures_speech import recognizer, voice
from tests.ivr_fakes import fake_ami

__all__ = [
    "agi_port",
    "api",
    "asterisk_install",
    "asterisk_pair",
    "bench_prompt",
    "callback_server",
    "db_engine",
    "db_url",
    "engine_ami",
    "fake_ami",
    "kannel",
    "kannel_factory",
    "kannel_sender",
    "make_asterisk_pair",
    "migrated_templates",
    "pg_database",
    "recognizer",
    "sessions",
    "solapi_server",
    "voice",
]


@pytest.fixture(autouse=True)
def _no_stale_log_handler() -> Iterator[None]:
    """A test that runs a CLI in-process (``anbu.cli.main``) installs anbu's root handler on
    that test's captured stderr, closed once the test ends: a later test in the same process
    would log into it ("--- Logging error ---"). Which test comes later depends on how the
    files are spread over the xdist workers, so every test removes the one it left."""
    root = logging.getLogger()
    before = set(root.handlers)
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "anbu" and handler not in before:
            root.removeHandler(handler)
            root.setLevel(level)
