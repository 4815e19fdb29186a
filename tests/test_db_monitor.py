"""One outage, one line: a connection the server accepts while going down (PostgreSQL's
immediate shutdown does) is not taken for its recovery. Seen in the database-outage test:
"reachable again after 0.0 s", then a second "unreachable" for the same outage."""

from __future__ import annotations

import logging

import pytest

from anbu.db.outage import DatabaseMonitor


def _lines(caplog: pytest.LogCaptureFixture, word: str) -> int:
    return sum(word in r.getMessage() for r in caplog.records)


def test_given_connection_dropped_before_any_statement_when_failing_again_then_one_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monitor = DatabaseMonitor("db")
    monitor.failed(ConnectionError("refused"))
    monitor.connected()  # accepted while going down
    monitor.failed(ConnectionError("reset"))  # dropped before a statement ran on it
    monitor.failed(ConnectionError("refused"))
    assert not monitor.available
    assert _lines(caplog, "unreachable") == 1
    assert _lines(caplog, "reachable again") == 0

    monitor.connected()
    assert not monitor.available  # a connection alone is a candidate end
    monitor.executed()
    assert monitor.available
    monitor.executed()
    assert _lines(caplog, "unreachable") == 1
    assert _lines(caplog, "reachable again") == 1


def test_given_database_up_when_connecting_and_executing_then_nothing_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monitor = DatabaseMonitor("db")
    monitor.connected()
    monitor.executed()
    assert monitor.available
    assert caplog.records == []
