"""Shared fixtures. Real components only: each fixture module fails loudly when its component
is missing (no silent skips)."""

from tests.db_fixtures import db_engine, db_url, migrated_templates, sessions
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
from tests.fixtures_speech import recognizer

__all__ = [
    "agi_port",
    "asterisk_install",
    "asterisk_pair",
    "bench_prompt",
    "callback_server",
    "db_engine",
    "db_url",
    "engine_ami",
    "kannel",
    "kannel_factory",
    "kannel_sender",
    "make_asterisk_pair",
    "migrated_templates",
    "recognizer",
    "sessions",
    "solapi_server",
]
