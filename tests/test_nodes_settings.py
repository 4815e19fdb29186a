"""Engine nodes: the settings (one engine = a one-node list; ANBU_NODES as JSON; production
refuses every node's default AMI secret), the node choice (pure: healthy node with the most
free channels, caps per node and for the process), and what the composition root builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anbu.app.parts import Telephony, build_container, build_dispatcher, build_escalation
from anbu.domain.pacing import Pacer
from anbu.ports import SystemClock
from anbu.settings import Environment, NodeSettings, Settings, SettingsError, production_problems
from devstack.asterisk import AsteriskInstall, provision_engines
from tests.test_settings_production import environ, example_env, use  # noqa: F401 (fixture)

# --- the choice (pure) --------------------------------------------------------------------------


def test_given_two_nodes_when_calls_start_then_they_alternate_by_free_channels() -> None:
    pacer = Pacer(max_concurrent=10, node_caps={"a": 3, "b": 3})
    chosen = []
    for _ in range(6):
        node = pacer.choose_node()
        assert node is not None
        pacer.started("trunk", 0.0, node)
        chosen.append(node)
    assert chosen == ["a", "b", "a", "b", "a", "b"]
    # Both full: nothing may start, whatever the process cap says.
    assert (pacer.choose_node(), pacer.available(0.0)) == (None, 0)
    pacer.finished("trunk", "b")
    assert (pacer.choose_node(), pacer.available(0.0)) == ("b", 1)


@pytest.mark.parametrize(
    ("caps", "active", "down", "expected", "available"),
    [
        ({"a": 5, "b": 5}, {}, set(), "a", 10),  # tie: the first configured
        ({"a": 5, "b": 10}, {}, set(), "b", 15),  # the bigger node has more free
        ({"a": 5, "b": 5}, {"a": 1}, set(), "b", 9),
        ({"a": 5, "b": 5}, {}, {"a"}, "b", 5),  # a node that is down gets nothing
        ({"a": 5, "b": 5}, {}, {"a", "b"}, None, 0),
        ({"a": 50, "b": 50}, {}, set(), "a", 20),  # the process cap (20) still holds
    ],
)
def test_node_choice_table(
    caps: dict[str, int],
    active: dict[str, int],
    down: set[str],
    expected: str | None,
    available: int,
) -> None:
    pacer = Pacer(max_concurrent=20, node_caps=caps)
    for node, n in active.items():
        for _ in range(n):
            pacer.started("trunk", 0.0, node)
    for node in down:
        assert pacer.node_down(node)
    assert pacer.choose_node() == expected
    assert pacer.available(0.0) == available


def test_given_node_down_when_it_comes_back_then_it_is_chosen_again() -> None:
    pacer = Pacer(max_concurrent=10, node_caps={"a": 2, "b": 2})
    assert pacer.node_down("a")
    assert not pacer.node_down("a")  # already down: no second page
    assert pacer.choose_node() == "b"
    assert pacer.node_up("a")
    assert not pacer.node_up("a")
    assert pacer.choose_node() == "a"


# --- settings ------------------------------------------------------------------------------------


def test_given_no_nodes_when_listing_then_the_one_engine_is_one_node() -> None:
    settings = Settings(
        engine={"ami_port": 1234, "ami_host": "10.0.0.9"},
        max_concurrent_calls=30,
        ivr={"trunk_endpoint": "kt"},
    )
    (node,) = settings.engine_nodes()
    assert (node.name, node.ami_host, node.ami_port, node.max_calls, node.trunk) == (
        "engine",
        "10.0.0.9",
        1234,
        30,
        "kt",
    )
    assert node.agi_address is None


def test_given_nodes_in_the_environment_when_loading_then_each_is_listed(
    environ: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    nodes = [
        {"name": "a", "ami_host": "10.0.0.1", "ami_port": 5038, "agi_address": "10.0.0.9:4573"},
        {"name": "b", "ami_host": "10.0.0.2", "ami_port": 5038, "max_calls": 20},
    ]
    environ.setenv("ANBU_NODES", json.dumps(nodes))
    settings = Settings()
    assert [(n.name, n.ami_host, n.max_calls) for n in settings.engine_nodes()] == [
        ("a", "10.0.0.1", 50),
        ("b", "10.0.0.2", 20),
    ]
    assert settings.nodes[0].agi_address == "10.0.0.9:4573"


def test_given_two_nodes_with_one_name_then_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Settings(nodes=[NodeSettings(name="a", ami_port=1), NodeSettings(name="a", ami_port=2)])


def test_given_production_with_nodes_then_every_node_secret_is_checked(
    environ: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    env = example_env()
    env["ANBU_NODES"] = json.dumps(
        [
            {"name": "a", "ami_port": 5038, "ami_secret": "a-long-node-secret"},
            {"name": "b", "ami_port": 5039},  # the development default
            {"name": "c", "ami_port": 5040, "ami_secret": "short"},
        ]
    )
    use(environ, env)
    with pytest.raises(SettingsError) as err:
        Settings()
    assert err.value.problems == [
        "ANBU_NODES[b].ami_secret: the development default is refused in production",
        "ANBU_NODES[c].ami_secret: at least 8 characters in production",
    ]


def test_given_the_sample_env_file_then_it_still_starts_with_one_engine(
    environ: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    use(environ, example_env())
    settings = Settings()
    assert settings.environment is Environment.PRODUCTION
    assert production_problems(settings) == []
    assert [n.name for n in settings.engine_nodes()] == ["engine"]


# --- the composition root -----------------------------------------------------------------------


async def test_given_two_nodes_when_root_builds_the_dispatcher_then_one_dialer_per_node(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'anbu.db'}",
        max_concurrent_calls=30,
        nodes=[
            NodeSettings(name="a", ami_port=5038, max_calls=20, agi_address="10.0.0.9:4573"),
            NodeSettings(name="b", ami_host="10.0.0.2", ami_port=5039, max_calls=15, trunk="kt"),
        ],
    )
    container = build_container(settings)
    escalation = build_escalation(container, send=False)
    tel = Telephony.build(settings, SystemClock(), serve_agi=False)
    try:
        dispatcher = build_dispatcher(container, tel, escalation.service)
        assert list(dispatcher.nodes) == ["a", "b"]
        assert dict(dispatcher.pacer.node_caps) == {"a": 20, "b": 15}
        assert dispatcher.pacer.max_concurrent == 30  # the global cap
        a, b = tel.links
        assert (a.ami.host, a.ami.port, b.ami.host, b.ami.port) == (
            "127.0.0.1",
            5038,
            "10.0.0.2",
            5039,
        )
        # Each node's calls name the AGI address that node reaches, and its own trunk.
        assert a.dialer.agi_address == "10.0.0.9:4573"
        assert b.dialer.agi_address is None
        assert b.dialer._endpoint == "kt"
        # Nothing connected yet: no node is up, the process is not ready.
        assert not container.readiness["asterisk"]()
        assert not any(n.healthy() for n in dispatcher.nodes.values())
    finally:
        await escalation.aclose()
        await container.aclose()


# --- the local stack (devstack) ------------------------------------------------------------------


def test_given_two_nodes_when_devstack_provisions_then_two_engines_on_distinct_ports(
    tmp_path: Path, asterisk_install: AsteriskInstall
) -> None:
    settings = Settings(
        var_dir=tmp_path,
        nodes=[
            NodeSettings(name="a", ami_port=15038),
            NodeSettings(name="b", ami_port=15138, agi_address="127.0.0.2:14600"),
        ],
    )
    a, b = provision_engines(settings, install=asterisk_install, bench_prompt=tmp_path / "q.wav")
    assert (a.name, b.name) == ("engine-a", "engine-b")
    assert (a.sip_port, a.ami_port, b.sip_port, b.ami_port) == (15060, 15038, 15160, 15138)
    assert (a.settings.rtp_start, a.settings.rtp_end) == (20000, 20499)
    assert (b.settings.rtp_start, b.settings.rtp_end) == (20500, 20999)
    carrier = settings.carrier
    assert carrier.sip_port not in (a.sip_port, b.sip_port)
    assert carrier.rtp_start > b.settings.rtp_end
    # Each engine hands its answered calls to the AGI address its node names.
    assert "AGI_PORT = 14573" in (a.etc_dir / "extensions.conf").read_text()
    b_dialplan = (b.etc_dir / "extensions.conf").read_text()
    assert "AGI_HOST = 127.0.0.2" in b_dialplan
    assert "AGI_PORT = 14600" in b_dialplan
    assert a.config_path != b.config_path
