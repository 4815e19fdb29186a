"""What the composition root gives a dispatch worker (``python -m scheduler.worker``): the same
parts as ``anbu serve``'s dispatcher, from one set of settings with the command line's
overrides. Nothing here connects anywhere: building is separate from starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from anbu.app.parts import Telephony, build_container, build_dispatcher, build_escalation
from anbu.ports import SystemClock
from anbu.settings import IvrSettings, Settings, SettingsError
from scheduler.worker import build_parser, settings_for


def test_given_worker_flags_when_building_settings_then_every_part_sees_them() -> None:
    args = build_parser().parse_args(
        ["--max-concurrent", "7", "--cps", "0", "--ami-port", "1234", "--ring-timeout", "3"]
    )
    settings = settings_for(args, Settings(scheduling={"calls_per_second": 20}))
    assert settings.max_concurrent_calls == 7
    assert settings.scheduling.calls_per_second is None  # 0: unlimited
    assert settings.engine.ami_port == 1234
    assert settings.trunk.ring_timeout_s == 3


def test_given_nodes_when_worker_sets_the_single_engine_then_it_refuses_in_one_line() -> None:
    nodes = Settings(nodes=[{"name": "a", "ami_port": 25038}, {"name": "b", "ami_port": 25040}])
    for flags in (["--ami-port", "1234"], ["--ami-secret", "s3cret"]):
        with pytest.raises(SettingsError, match="ANBU_NODES is set"):
            settings_for(build_parser().parse_args(flags), nodes)
    assert settings_for(build_parser().parse_args(["--cps", "2"]), nodes).nodes == nodes.nodes


async def test_given_worker_settings_when_root_builds_dispatcher_then_tuned_and_listening(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'anbu.db'}",
        max_concurrent_calls=7,
        ivr=IvrSettings(ami_ping_interval_s=3.0, ami_reconnect_max_s=4.0),
    )
    container = build_container(settings)
    escalation = build_escalation(container, send=False)
    tel = Telephony.build(settings, SystemClock(), agi_address="10.0.0.5:4573", serve_agi=False)
    try:
        dispatcher = build_dispatcher(container, tel, escalation.service)
        # The cap reaches both the dispatcher (claims) and the dialer (originates).
        # (The adapters keep these private; reading them here beats widening their API.)
        assert dispatcher.pacer.max_concurrent == 7
        assert tel.dialer._slots._value == 7
        assert tel.dialer.agi_address == "10.0.0.5:4573"
        # AMI keepalive and reconnect tuning come from settings.ivr, as in anbu serve.
        assert tel.ami._ping_interval_s == 3.0
        assert tel.ami._reconnect_max_s == 4.0
        # Incidents open as soon as a case closes (not at the 10 s sweep).
        assert escalation.service.on_checkin_closed in dispatcher.listeners
        assert container.dispatcher is dispatcher
        assert set(container.readiness) == {"asterisk"}
        assert tel.agi is None
    finally:
        await escalation.aclose()
        await container.aclose()
