"""A real trunk: registration with digest auth, From user/domain, outbound proxy, caller id.

SIPp plays the carrier: its registrar challenges the REGISTER (digest), checks the credentials,
and takes the INVITE only if its From carries the registered number at the carrier's domain.
The registrar's domain is not resolvable: everything must go through the outbound proxy.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from anbu.domain.calls import CallResult
from anbu.domain.replies import Reply
from anbu.ports import CallRequest
from anbu.settings import Settings, SettingsError, TrunkSettings
from devstack.asterisk import (
    AsteriskConfigError,
    AsteriskInstall,
    AsteriskInstance,
    AsteriskRole,
    provision_engine,
)
from ivr.agi import AgiServer
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from tests.fixtures_asterisk import (
    AsteriskPair,
    asterisk_processes,
    free_ports,
    instance_settings,
)
from tests.sipp import REPLY_HEAD, Sipp, running
from tests.test_calls_integration import audio_dir, open_rig  # noqa: F401 (fixture)
from tests.test_settings_production import KEEP, example_env, use

pytestmark = pytest.mark.asterisk

ACCOUNT = "07012345678"  # the carrier account = the registered 발신번호
SECRET = "kt-trunk-secret"
DOMAIN = "ktsip.example"  # not resolvable: only the outbound proxy can reach it

REGISTRAR_AND_CARRIER = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier: registrar with digest auth, then takes one INVITE">
  <recv request="REGISTER" optional="true" next="register"/>
  <recv request="INVITE" next="invite">
    <action>
      <ereg regexp="sip:{ACCOUNT}@{DOMAIN}" search_in="hdr" header="From:" check_it="true"
            assign_to="from_ok"/>
      <log message="From ok: [$from_ok]"/>
    </action>
  </recv>
  <label id="register"/>
  <send><![CDATA[

      SIP/2.0 401 Unauthorized
{REPLY_HEAD}
      WWW-Authenticate: Digest realm="{DOMAIN}", nonce="[pid]n[call_number]", algorithm=MD5
      Content-Length: 0

    ]]></send>
  <recv request="REGISTER">
    <action>
      <ereg regexp="sip:{DOMAIN}" search_in="msg" check_it="true" assign_to="ruri_ok"/>
      <log message="Request-URI ok: [$ruri_ok]"/>
      <verifyauth assign_to="authvalid" username="{ACCOUNT}" password="{SECRET}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="registered"/>
  <send next="end"><![CDATA[

      SIP/2.0 403 Forbidden
{REPLY_HEAD}
      Content-Length: 0

    ]]></send>
  <label id="registered"/>
  <send next="end"><![CDATA[

      SIP/2.0 200 OK
{REPLY_HEAD}
      [last_Contact:];expires=3600
      Expires: 3600
      Content-Length: 0

    ]]></send>
  <label id="invite"/>
  <send><![CDATA[

      SIP/2.0 486 Busy Here
{REPLY_HEAD}
      Content-Length: 0

    ]]></send>
  <recv request="ACK"/>
  <label id="end"/>
</scenario>
"""


def carrier_trunk(proxy_port: int, password: str = SECRET) -> TrunkSettings:
    return TrunkSettings(
        host="127.0.0.1",
        port=proxy_port,
        username=ACCOUNT,
        password=SecretStr(password),
        registration=True,
        registrar=DOMAIN,
        from_domain=DOMAIN,
        outbound_proxy=f"sip:127.0.0.1:{proxy_port};lr",
        caller_id=ACCOUNT,
        registration_retry_s=5,
        # No OPTIONS pings: the SIPp carrier is a script that fails on a request it does not
        # expect (trunk health by OPTIONS: test_nodes_trunk, against the Asterisk carrier).
        qualify_s=0,
    )


@pytest.fixture
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A var dir with a short path: Asterisk's control socket (under it) must fit in 107 bytes,
    and a test's own tmp_path carries its name (and, under xdist, the worker's)."""
    return tmp_path_factory.mktemp("var")


def engine_for(
    var_dir: Path, install: AsteriskInstall, bench_prompt: Path, trunk: TrunkSettings
) -> tuple[Settings, AsteriskInstance]:
    settings = Settings(
        var_dir=var_dir,
        engine=instance_settings(),
        carrier=instance_settings(),
        trunk=trunk,
        agi_port=free_ports(1)[0],
    )
    return settings, provision_engine(settings, install=install, bench_prompt=bench_prompt)


def carrier_sipp(tmp_path: Path, calls: int) -> tuple[int, Sipp]:
    """The carrier (registrar and proxy) for ``calls`` SIP dialogs, and the port it listens on."""
    port, media = free_ports(2)
    scenario = tmp_path / "carrier.xml"
    scenario.write_text(REGISTRAR_AND_CARRIER, encoding="iso-8859-1")
    return port, Sipp(scenario, port, media, tmp_path / "sipp", calls=calls)


def registration_status(engine: AsteriskInstance, timeout_s: float = 15.0) -> str:
    """The trunk's registration line once it is no longer in progress."""
    deadline = time.monotonic() + timeout_s
    line = ""
    while time.monotonic() < deadline:
        output = engine.rx("pjsip show registrations")
        line = next((x for x in output.splitlines() if "trunk-reg" in x and "/" in x), "")
        if "Registered" in line or "Rejected" in line or "Failed" in line:
            return line
        time.sleep(0.2)
    return line


async def test_given_carrier_trunk_when_engine_starts_then_registers_and_calls_as_registered_number(
    tmp_path: Path, var_dir: Path, asterisk_install: AsteriskInstall, bench_prompt: Path
) -> None:
    port, carrier = carrier_sipp(tmp_path, calls=2)
    settings, engine = engine_for(var_dir, asterisk_install, bench_prompt, carrier_trunk(port))
    with running(carrier) as sipp:
        await engine.start_async()
        try:
            assert "Registered" in await asyncio.to_thread(registration_status, engine)
            ami = AmiClient("127.0.0.1", engine.ami_port, engine.ami_user, engine.ami_secret)
            await ami.connect(timeout_s=10.0)
            registry = CallRegistry()
            agi = AgiServer({}, host="127.0.0.1", port=settings.agi_port)
            dialer = AmiDialer.from_settings(settings, ami, registry)
            try:
                await agi.start()
                request = CallRequest(f"trunk-{uuid.uuid4().hex[:8]}", "01099990013", "", 5.0)
                record = await asyncio.wait_for(dialer.call(request), 30)
            finally:
                await dialer.close()
                await agi.stop(grace_s=1.0)
                await ami.close()
            # The carrier answered 486 only because the From was the registered number at its
            # domain (check_it); a wrong From would have failed the SIPp call instead.
            assert record.result is CallResult.BUSY
            code = await asyncio.to_thread(sipp.wait)
            assert code == 0, sipp.output()
        finally:
            await engine.stop_async()
    assert not asterisk_processes(var_dir)


async def test_given_wrong_password_when_engine_starts_then_registration_rejected(
    tmp_path: Path, var_dir: Path, asterisk_install: AsteriskInstall, bench_prompt: Path
) -> None:
    port, carrier = carrier_sipp(tmp_path, calls=1)
    trunk = carrier_trunk(port, password="wrong")
    _settings, engine = engine_for(var_dir, asterisk_install, bench_prompt, trunk)
    with running(carrier):
        await engine.start_async()
        try:
            status = await asyncio.to_thread(registration_status, engine)
        finally:
            await engine.stop_async()
    assert "Registered" not in status
    assert "Rejected" in status


def test_given_real_trunk_settings_when_rendered_then_every_line_is_in_pjsip_conf(
    tmp_path: Path, var_dir: Path, asterisk_install: AsteriskInstall, bench_prompt: Path
) -> None:
    trunk = carrier_trunk(5061).model_copy(
        update={
            "transport": "tls",
            "tls_ca_file": Path("/etc/ssl/certs/ca-certificates.crt"),
            "send_pai": True,
            "realm": DOMAIN,
            "caller_name": "관악구청",
        }
    )
    _settings, engine = engine_for(var_dir, asterisk_install, bench_prompt, trunk)
    conf = (engine.etc_dir / "pjsip.conf").read_text() + (
        engine.etc_dir / "pjsip_endpoints.conf"
    ).read_text()
    for line in (
        "protocol = tls",
        "method = tlsv1_2",
        "ca_list_file = /etc/ssl/certs/ca-certificates.crt",
        "verify_server = yes",
        f"from_user = {ACCOUNT}",
        f"from_domain = {DOMAIN}",
        r"outbound_proxy = sip:127.0.0.1:5061\;lr",
        f'callerid = "관악구청" <{ACCOUNT}>',
        "send_pai = yes",
        f"realm = {DOMAIN}",
        f"server_uri = sip:{DOMAIN};transport=tls",
        f"client_uri = sip:{ACCOUNT}@{DOMAIN}",
        "contact = sip:127.0.0.1:5061;transport=tls",
    ):
        assert line in conf, line


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"from_domain": "evil.example\nallow=all"}, "line breaks"),
        ({"registration": True, "username": None}, "registration needs a username"),
        ({"caller_name": 'x" <1>'}, "caller_name"),
    ],
)
def test_given_unsafe_trunk_values_when_rendered_then_config_error(
    tmp_path: Path,
    asterisk_install: AsteriskInstall,
    bench_prompt: Path,
    update: dict[str, object],
    message: str,
) -> None:
    trunk = carrier_trunk(5060).model_copy(update=update)
    instance = AsteriskInstance(
        "engine",
        AsteriskRole.ENGINE,
        tmp_path,
        instance_settings(),
        install=asterisk_install,
        trunk=trunk,
        bench_prompt=bench_prompt,
    )
    with pytest.raises(AsteriskConfigError, match=message):
        instance.render()


def test_given_production_without_caller_number_when_configured_then_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("ANBU_") and n not in KEEP]:
        monkeypatch.delenv(name)
    environ = monkeypatch
    env = example_env()
    env.pop("ANBU_TRUNK__CALLER_ID")
    use(environ, env)
    with pytest.raises(SettingsError, match="ANBU_TRUNK__CALLER_ID"):
        Settings()
    environ.setenv("ANBU_TRUNK__CALLER_ID", ACCOUNT)
    assert Settings().trunk.caller_id == ACCOUNT
    with pytest.raises(ValidationError, match="digits only"):
        TrunkSettings(caller_id="02-123-4567")


@pytest.fixture
def tls_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (the carrier's, and its own CA)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    done = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return cert, key


def tls_trunk(certificate: tuple[Path, Path], *, ca_file: Path, **more: str) -> TrunkSettings:
    """A TLS trunk presenting ``certificate`` that verifies the carrier against ``ca_file``."""
    cert, key = certificate
    return TrunkSettings(
        transport="tls",
        tls_cert_file=cert,
        tls_key_file=key,
        tls_ca_file=ca_file,
        tls_verify_server=True,
        **more,
    )


async def test_given_tls_trunk_with_verified_certificate_when_called_then_answered_over_tls(
    make_asterisk_pair: Callable[..., AsteriskPair],
    tls_certificate: tuple[Path, Path],
    audio_dir: Path,  # noqa: F811
) -> None:
    cert, _ = tls_certificate
    trunk = tls_trunk(tls_certificate, ca_file=cert, caller_id=ACCOUNT)
    pair = make_asterisk_pair(trunk=trunk)
    assert "protocol = tls" in (pair.engine.etc_dir / "pjsip.conf").read_text()
    async with open_rig(pair, audio_dir) as rig:
        record = await rig.call("01099990001")
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")
    transports = pair.engine.rx("pjsip show transports")
    assert "tls" in transports


async def test_given_tls_trunk_with_untrusted_certificate_when_called_then_never_connected(
    make_asterisk_pair: Callable[..., AsteriskPair],
    tls_certificate: tuple[Path, Path],
    audio_dir: Path,  # noqa: F811
) -> None:
    # The carrier's certificate is self-signed; the engine trusts only the system's CAs.
    trunk = tls_trunk(tls_certificate, ca_file=Path("/etc/ssl/certs/ca-certificates.crt"))
    pair = make_asterisk_pair(trunk=trunk)
    async with open_rig(pair, audio_dir) as rig:
        record = await rig.call("01099990001", ring_timeout_s=3.0)
    # No SIP response ever came back: a network failure (paged when it repeats), not
    # "congestion" (Asterisk's own cause 34 for the failed connection).
    assert record.result is CallResult.NETWORK_FAILURE
