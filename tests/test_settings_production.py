"""Production settings: partial nested settings keep their defaults; production refuses every
development default (each refusal one line naming its variable); the sample env file
(docker/anbu.env.example) starts in production once its secrets are filled, and the first admin
key comes from `anbu key create`, not from a bootstrap key."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

from anbu.app.parts import build_api, build_container
from anbu.settings import AsteriskSettings, Environment, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docker" / "anbu.env.example"
TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
# Variables of the test machine that are not settings of the process under test.
KEEP = {"ANBU_CACHE", "ANBU_TEST_PG_DSN"}


def example_env() -> dict[str, str]:
    """The sample env file with every CHANGE_ME filled as an operator would."""
    env: dict[str, str] = {}
    for raw in EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        if "CALLBACK_TOKEN" in name or name.endswith(("_DLR_URL", "_MO_URL")):
            value = value.replace("CHANGE_ME", TOKEN)
        else:
            value = value.replace("CHANGE_ME", f"{name.lower()}-7c41d0a9e2")
        env[name] = value
    return env


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ANBU_* setting from the machine leaks into the test."""
    for name in list(os.environ):
        if name.startswith("ANBU_") and name not in KEEP:
            monkeypatch.delenv(name)
    return monkeypatch


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# --- partial nested settings ---------------------------------------------------------------------


def test_one_engine_field_keeps_the_other_defaults(environ: pytest.MonkeyPatch) -> None:
    # Today's failure: "engine.sip_port/ami_port/rtp_start/rtp_end Field required".
    environ.setenv("ANBU_ENGINE__AMI_SECRET", "a-real-secret-1234")
    s = load_settings()
    assert s.engine.ami_secret.get_secret_value() == "a-real-secret-1234"
    assert (s.engine.sip_port, s.engine.ami_port) == (15060, 15038)
    assert (s.engine.rtp_start, s.engine.rtp_end) == (20000, 20999)
    environ.setenv("ANBU_CARRIER__SIP_PORT", "25062")
    s = load_settings()
    assert (s.carrier.sip_port, s.carrier.ami_port, s.carrier.rtp_start) == (25062, 15039, 21000)


def test_a_plain_asterisk_settings_is_still_accepted() -> None:
    plain = AsteriskSettings(sip_port=31060, ami_port=31038, rtp_start=31100, rtp_end=31199)
    s = Settings(engine=plain, carrier=plain)
    assert (s.engine.sip_port, s.carrier.rtp_end) == (31060, 31199)


def test_a_bad_value_is_one_line_naming_its_variable(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("ANBU_ENGINE__SIP_PORT", "not-a-port")
    environ.setenv("ANBU_ENGINE__AMI_SECRET", "do-not-echo-me-123")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("ANBU_ENGINE__SIP_PORT: ")
    assert "not-a-port" not in str(err.value)  # pydantic's dump would echo every input


# --- the sample env file -------------------------------------------------------------------------


def test_sample_env_file_starts_in_production(environ: pytest.MonkeyPatch) -> None:
    use(environ, example_env())
    s = load_settings()
    assert s.environment is Environment.PRODUCTION
    assert s.bootstrap_api_key is None  # the development default is no key in production
    assert s.public_url.startswith("https://")
    assert s.engine.ami_port == 25038  # one port changed, as set in the file
    assert s.sms.kannel_dlr_url is not None
    assert f"key={TOKEN}" in s.sms.kannel_dlr_url


def test_sample_env_file_has_only_known_variables() -> None:
    # A misspelt variable would be silently ignored by the settings.
    settings_fields = set(Settings.model_fields)
    for name in example_env():
        if not name.startswith("ANBU_") or name == "ANBU_DOCKER_SMSC_CONF":
            continue
        top = name.removeprefix("ANBU_").split("__")[0].lower()
        assert top in settings_fields, name
        if "__" in name:
            sub = name.split("__")[1].lower()
            model = Settings.model_fields[top].annotation
            assert isinstance(model, type)
            assert sub in model.model_fields, name


# --- every refusal -------------------------------------------------------------------------------

REFUSALS: list[tuple[str, dict[str, str | None], list[str]]] = [
    (
        "engine AMI default",
        {"ANBU_ENGINE__AMI_SECRET": "anbu-dev-secret"},
        ["ANBU_ENGINE__AMI_SECRET"],
    ),
    ("engine AMI unset", {"ANBU_ENGINE__AMI_SECRET": None}, ["ANBU_ENGINE__AMI_SECRET"]),
    ("engine AMI short", {"ANBU_ENGINE__AMI_SECRET": "abc"}, ["ANBU_ENGINE__AMI_SECRET"]),
    ("sendsms default", {"ANBU_SMS__KANNEL_PASSWORD": None}, ["ANBU_SMS__KANNEL_PASSWORD"]),
    (
        "kannel admin default",
        {"ANBU_SMS__KANNEL_ADMIN_PASSWORD": "anbu-dev-kannel-admin"},
        ["ANBU_SMS__KANNEL_ADMIN_PASSWORD"],
    ),
    (
        "callback token unset",
        {"ANBU_ESCALATION__CALLBACK_TOKEN": None},
        ["ANBU_ESCALATION__CALLBACK_TOKEN"],
    ),
    (
        "report URL with another key",
        {"ANBU_SMS__KANNEL_DLR_URL": "http://127.0.0.1:28080/v1/sms/kannel/dlr?key=other"},
        ["ANBU_SMS__KANNEL_DLR_URL"],
    ),
    (
        "MQTT on without credentials",
        {"ANBU_MQTT__ENABLED": "true"},
        ["ANBU_MQTT__USERNAME", "ANBU_MQTT__PASSWORD"],
    ),
    (
        "MQTT on without a password",
        {"ANBU_MQTT__ENABLED": "true", "ANBU_MQTT__USERNAME": "anbu"},
        ["ANBU_MQTT__PASSWORD"],
    ),
    ("http public URL", {"ANBU_PUBLIC_URL": "http://anbu.example.go.kr"}, ["ANBU_PUBLIC_URL"]),
    ("public URL default", {"ANBU_PUBLIC_URL": None}, ["ANBU_PUBLIC_URL"]),
    ("bootstrap key", {"ANBU_BOOTSTRAP_API_KEY": "dev-key"}, ["ANBU_BOOTSTRAP_API_KEY"]),
]


@pytest.mark.parametrize(
    ("change", "offenders"), [(c, o) for _, c, o in REFUSALS], ids=[i for i, _, _ in REFUSALS]
)
def test_production_refuses(
    environ: pytest.MonkeyPatch, change: dict[str, str | None], offenders: list[str]
) -> None:
    env = example_env()
    for name, value in change.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    use(environ, env)
    with pytest.raises(SettingsError) as err:
        load_settings()
    problems = err.value.problems
    assert [p.split(":", 1)[0] for p in problems] == offenders
    assert all("\n" not in p for p in problems)


def test_production_accepts_what_it_should(environ: pytest.MonkeyPatch) -> None:
    env = example_env()
    # ANBU_BOOTSTRAP_API_KEY="" (what docker/compose.yml used to set) is no key, not a refusal.
    env["ANBU_BOOTSTRAP_API_KEY"] = ""
    # MQTT on with its credentials.
    env |= {
        "ANBU_MQTT__ENABLED": "true",
        "ANBU_MQTT__USERNAME": "anbu",
        "ANBU_MQTT__PASSWORD": "mqtt-secret-123",
    }
    use(environ, env)
    s = load_settings()
    assert s.bootstrap_api_key is None
    assert s.mqtt.username == "anbu"


def test_kannel_secrets_only_matter_when_kannel_sends(environ: pytest.MonkeyPatch) -> None:
    env = example_env()
    for name in (
        "ANBU_SMS__KANNEL_PASSWORD",
        "ANBU_SMS__KANNEL_ADMIN_PASSWORD",
        "ANBU_SMS__KANNEL_DLR_URL",
        "ANBU_SMS__KANNEL_MO_URL",
    ):
        env.pop(name)
    env["ANBU_SMS__PROVIDER"] = "solapi"
    use(environ, env)
    assert load_settings().sms.provider == "solapi"
    environ.setenv("ANBU_SMS__FALLBACK_PROVIDER", "kannel")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert [p.split(":", 1)[0] for p in err.value.problems] == [
        "ANBU_SMS__KANNEL_PASSWORD",
        "ANBU_SMS__KANNEL_ADMIN_PASSWORD",
    ]


def test_development_keeps_its_bootstrap_key(environ: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.bootstrap_api_key is not None
    assert s.bootstrap_api_key.get_secret_value() == "dev-key"
    environ.setenv("ANBU_BOOTSTRAP_API_KEY", "")
    assert load_settings().bootstrap_api_key is None


# --- the processes -------------------------------------------------------------------------------


async def _anbu(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_") or k in KEEP}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anbu.cli",
        *args,
        env=base | env | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_refuses_defaults_one_line_per_variable() -> None:
    rc, _out, err = await _anbu({"ANBU_ENVIRONMENT": "production"}, "db", "upgrade")
    assert rc == 2
    lines = err.splitlines()
    assert "Traceback" not in err
    assert all(line.startswith("anbu: ANBU_") for line in lines), err
    named = {line.split(":")[1].strip() for line in lines}
    assert {
        "ANBU_ENGINE__AMI_SECRET",
        "ANBU_SMS__KANNEL_PASSWORD",
        "ANBU_SMS__KANNEL_ADMIN_PASSWORD",
        "ANBU_ESCALATION__CALLBACK_TOKEN",
        "ANBU_MQTT__USERNAME",
        "ANBU_MQTT__PASSWORD",
        "ANBU_PUBLIC_URL",
    } <= named


async def test_app_builds_from_the_sample_env_file(
    environ: pytest.MonkeyPatch, db_url: str
) -> None:
    use(environ, example_env() | {"ANBU_DATABASE_URL": db_url})
    container = build_container(load_settings())
    try:
        transport = httpx.ASGITransport(app=build_api(container))
        async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
            assert (await client.get("/health")).status_code == 200
    finally:
        await container.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_production_serves_and_the_first_admin_key_comes_from_the_cli(
    db_url: str,
) -> None:
    port = _free_port()
    env = example_env() | {"ANBU_DATABASE_URL": db_url, "ANBU_API_PORT": str(port)}
    rc, out, err = await _anbu(env, "key", "create", "first-admin", "--admin")
    assert rc == 0, err
    key = out.strip().splitlines()[-1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_") or k in KEEP}
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anbu.cli",
        "serve",
        "--no-telephony",
        env=base | env | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(300):  # the process starts (migrations included)
                if serve.returncode is not None:
                    break
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            assert serve.returncode is None, "anbu serve exited in production"
            r = await client.post(
                "/v1/districts",
                headers={"X-API-Key": key},
                json={"code": "11620", "name": "관악구"},
            )
            assert r.status_code == 201, r.text
            # serve put no development key in place.
            r = await client.get("/v1/districts", headers={"X-API-Key": "dev-key"})
            assert r.status_code == 401, r.text
    finally:
        if serve.returncode is None:
            serve.terminate()
        _out, err_bytes = await serve.communicate()
    assert "Traceback" not in err_bytes.decode(errors="replace")


@pytest.mark.parametrize("module", ["scheduler.worker", "escalation.worker"])
async def test_workers_refuse_defaults_one_line_per_variable(module: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_") or k in KEEP}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env=base | {"ANBU_ENVIRONMENT": "production", "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err_bytes = await proc.communicate()
    err = err_bytes.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert err.splitlines()[0] == (
        f"{module}: ANBU_ENGINE__AMI_SECRET: the development default is refused in production"
    )
    assert all(line.startswith(f"{module}: ANBU_") for line in err.splitlines())
