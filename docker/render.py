"""The containers' init step: render what the other containers mount, from ``ANBU_*`` settings.

Runs in the anbu image against the shared volume (``ANBU_VAR_DIR``, /var/lib/anbu):

    python /srv/anbu/render.py audio                 # prompts -> $ANBU_AUDIO_DIR
    python /srv/anbu/render.py asterisk NAME ROLE    # $ANBU_VAR_DIR/asterisk/NAME/etc/...
    python /srv/anbu/render.py kannel                # $ANBU_VAR_DIR/kannel/kannel.conf

Asterisk plays the prompts and records replies by absolute path, so the audio and the
recordings live in the volume every container mounts at the same place. ``ROLE`` is
``engine`` (settings ``ANBU_ENGINE__*``, trunk ``ANBU_TRUNK__*``, AGI ``ANBU_AGI_*``) or
``carrier`` (the carrier stand-in, tests only). For a production SMSC, point
``ANBU_DOCKER_SMSC_CONF`` at a file holding Kannel ``group = smsc`` sections: they replace the
fake SMSC groups. Errors print one line and exit 2.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from anbu.errors import AnbuError
from anbu.settings import ROOT, Settings, load_settings
from devstack.asterisk import AsteriskInstall, provision_carrier, provision_engine
from devstack.kannel import KannelConfig

# Debian's asterisk package: modules, data and binaries under the system root.
DEBIAN_ASTERISK = AsteriskInstall(root=Path("/"), version="debian")
_FAKE_SMSC_START = "# The SMSC stand-in"
_FAKE_SMSC_END = "group = smsbox"


def render_audio(settings: Settings) -> None:
    source = ROOT / "audio"
    target = settings.audio_dir
    if target.resolve() == source.resolve():
        return
    shutil.copytree(source, target, dirs_exist_ok=True)
    print(f"prompts copied to {target}")


def render_asterisk(settings: Settings, name: str, role: str) -> None:
    if role == "engine":
        instance = provision_engine(settings, install=DEBIAN_ASTERISK, name=name)
    elif role == "carrier":
        instance = provision_carrier(settings, install=DEBIAN_ASTERISK, name=name)
    else:
        raise SystemExit(f"render.py: role must be engine or carrier, not {role!r}")
    print(f"asterisk {name} ({role}) rendered: SIP {instance.sip_port}, AMI {instance.ami_port}")


def render_kannel(settings: Settings) -> None:
    config = KannelConfig.from_settings(settings, name="kannel")
    text = config.render()
    smsc = os.environ.get("ANBU_DOCKER_SMSC_CONF")
    if smsc:
        start, end = text.index(_FAKE_SMSC_START), text.index(_FAKE_SMSC_END)
        text = text[:start] + Path(smsc).read_text(encoding="utf-8") + "\n" + text[end:]
    (config.dir / "spool").mkdir(parents=True, exist_ok=True)
    conf = config.dir / "kannel.conf"
    partial = conf.with_name(".kannel.conf.partial")
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o600)  # passwords
    partial.replace(conf)
    print(f"kannel rendered: {conf} (sendsms {config.ports.sendsms})")


def main(argv: list[str]) -> int:
    try:
        settings = load_settings()
        match argv:
            case ["audio"]:
                render_audio(settings)
            case ["asterisk", name, role]:
                render_asterisk(settings, name, role)
            case ["kannel"]:
                render_kannel(settings)
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except (AnbuError, OSError, ValueError) as exc:
        message = str(exc).replace("\n", "; ")
        print(f"render.py: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
