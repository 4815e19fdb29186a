"""docker/render.py, the containers' init step, from the sample env file: what the Asterisk and
Kannel containers mount is rendered for Debian's package layout with the env file's ports and
secrets. `make docker-test` runs it in the real images; this keeps it checked in every run of
the suite (CI does not run the containers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_settings_production import KEEP, ROOT, TOKEN, example_env

RENDER = ROOT / "docker" / "render.py"


def _render(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_") or k in KEEP}
    return subprocess.run(
        [sys.executable, str(RENDER), *args],
        env=base | env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(tmp_path: Path) -> dict[str, str]:
    return example_env() | {
        "ANBU_VAR_DIR": str(tmp_path / "var"),
        "ANBU_CACHE_DIR": str(tmp_path / "cache"),
        "ANBU_AUDIO_DIR": str(tmp_path / "var" / "audio"),
    }


def test_engine_is_rendered_for_debians_asterisk(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A short root: Asterisk's control socket path (under the var dir) must fit in 107 bytes.
    tmp_path = tmp_path_factory.mktemp("render")
    env = _env(tmp_path)
    done = _render(env, "asterisk", "engine", "engine")
    assert done.returncode == 0, done.stderr
    etc = tmp_path / "var" / "asterisk" / "engine" / "etc"
    conf = (etc / "asterisk.conf").read_text(encoding="utf-8")
    assert "astmoddir => /usr/lib/" in conf
    assert "asterisk/modules" in conf
    assert f"astrundir => {etc.parent / 'run'}" in conf
    assert "127.0.0.1:25060" in (etc / "pjsip.conf").read_text(encoding="utf-8")
    manager = (etc / "manager.conf").read_text(encoding="utf-8")
    assert "port = 25038" in manager
    assert f"secret = {env['ANBU_ENGINE__AMI_SECRET']}" in manager
    extensions = (etc / "extensions.conf").read_text(encoding="utf-8")
    assert "AGI_HOST = 127.0.0.1" in extensions
    assert "AGI_PORT = 25573" in extensions
    assert env["ANBU_ENGINE__AMI_SECRET"] not in done.stdout + done.stderr


def test_prompts_are_copied_where_asterisk_plays_them(tmp_path: Path) -> None:
    done = _render(_env(tmp_path), "audio")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "audio" / "rendered" / "question.wav").is_file()


def test_kannel_is_rendered_with_the_env_files_ports_and_callback(tmp_path: Path) -> None:
    env = _env(tmp_path)
    done = _render(env, "kannel")
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "var" / "kannel" / "kannel.conf").read_text(encoding="utf-8")
    assert "sendsms-port = 24013" in conf
    assert "admin-port = 24000" in conf
    assert f'admin-password = "{env["ANBU_SMS__KANNEL_ADMIN_PASSWORD"]}"' in conf
    assert f"key={TOKEN}" in conf  # replies come back with the callback token
    assert "smsc = fake" in conf
    assert (tmp_path / "var" / "kannel" / "spool").is_dir()


def test_a_real_smsc_replaces_the_fake_ones(tmp_path: Path) -> None:
    smsc = tmp_path / "smsc.conf"
    smsc.write_text(
        'group = smsc\nsmsc = smpp\nsmsc-id = carrier\nhost = "smsc.example"\n', encoding="utf-8"
    )
    done = _render(_env(tmp_path) | {"ANBU_DOCKER_SMSC_CONF": str(smsc)}, "kannel")
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "var" / "kannel" / "kannel.conf").read_text(encoding="utf-8")
    assert "smsc = smpp" in conf
    assert "smsc = fake" not in conf
    assert "group = smsbox" in conf


def test_default_secrets_stop_the_init_step_with_one_line_each(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env.pop("ANBU_ENGINE__AMI_SECRET")
    done = _render(env, "kannel")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "render.py: ANBU_ENGINE__AMI_SECRET: the development default is refused in production"
    )
