#!/usr/bin/env bash
# Install everything anbu needs, idempotently, under one cache directory ($ANBU_CACHE).
#   - Debian packages (espeak-ng, sox, Kannel) through apt, only when missing;
#   - a Python venv with anbu and its extras, re-installed only when pyproject.toml changes;
#   - Asterisk 22 from Debian sid, unpacked into the cache (see ivr/asterisk.py).
# A second run costs about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${ANBU_CACHE:-$HOME/.cache/anbu}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"
export PIP_CACHE_DIR="$CACHE/pip"

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
[ -x /usr/sbin/bearerbox ] || need+=(kannel)
[ -x /usr/lib/kannel/test/fakesmsc ] || need+=(kannel-extras)
dpkg -s libsox-fmt-base >/dev/null 2>&1 || need+=(libsox-fmt-base)
# gTTS returns MP3, which plain sox cannot read.
dpkg -s libsox-fmt-mp3 >/dev/null 2>&1 || need+=(libsox-fmt-mp3)
# The gTTS tests make a throwaway certificate for their local HTTPS stand-in.
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
# tests/test_mqtt_credentials.py runs a private broker with a password file.
command -v mosquitto_passwd >/dev/null || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VENV="$CACHE/venv"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.anbu-installed" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into $VENV"
  "$VENV/bin/pip" install -q -e '.[dev,voice]'
  echo "$want" > "$VENV/.anbu-installed"
elif ! "$VENV/bin/python" -c "import anbu" 2>/dev/null; then
  "$VENV/bin/pip" install -q --no-deps -e .
fi

"$VENV/bin/anbu" asterisk install
