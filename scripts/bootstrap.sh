#!/usr/bin/env bash
# Install everything anbu needs, idempotently, under one cache directory ($ANBU_CACHE).
#   - Debian packages (espeak-ng, sox, Kannel) through apt, only when missing;
#   - $ANBU_CACHE/venv: the Python DEPENDENCIES of anbu and its extras (not anbu itself),
#     shared by every checkout, re-installed only when pyproject.toml's dependencies change;
#   - $ANBU_CACHE/checkouts/<key>/venv: a tiny venv for THIS checkout (keyed to its path) that
#     sees the shared dependencies and this checkout's code through .pth files, with an `anbu`
#     command; ./.venv links to it. Any number of clones share the dependencies; deleting one
#     breaks no other (a venv whose checkout is gone is removed here);
#   - Asterisk 22 from Debian sid, unpacked into the cache (see devstack/asterisk.py).
# A second run costs about a second.
#   scripts/bootstrap.sh           install (what is missing)
#   scripts/bootstrap.sh --venv    print this checkout's venv directory (the Makefile uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"
CACHE="${ANBU_CACHE:-$HOME/.cache/anbu}"
PY="${PYTHON:-python3}"
KEY="$(printf '%s' "$ROOT" | sha256sum | cut -c1-16)"
HERE="$CACHE/checkouts/$KEY/venv"
if [ "${1:-}" = "--venv" ]; then
  echo "$HERE"
  exit 0
fi
mkdir -p "$CACHE"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$CACHE/pip}"

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
# SIPp: the far end of the interop tests (a SIP stack nobody here wrote).
command -v sipp >/dev/null || need+=(sip-tester)
# The report (PDF) and the console's browser tests (Playwright drives this chromium): headless
# Chromium, Korean fonts (fonts-nanum), and pdftoppm for the PDF test.
command -v chromium >/dev/null || need+=(chromium)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
dpkg -s fonts-nanum >/dev/null 2>&1 || need+=(fonts-nanum)
# tests/test_mqtt_credentials.py runs a private broker with a password file.
command -v mosquitto_passwd >/dev/null || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the shared dependencies ------------------------------------------------------------------
SHARED="$CACHE/venv"
if [ ! -x "$SHARED/bin/python" ]; then
  "$PY" -m venv "$SHARED"
fi
reqs="$("$SHARED/bin/python" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project.get("optional-dependencies", {})
for req in [*project["dependencies"], *(r for x in ("dev", "voice", "report") for r in extras.get(x, []))]:
    print(req)
EOF
)"
want="deps-$(printf '%s' "$reqs" | sha256sum | cut -c1-16)"
if [ "$(cat "$SHARED/.anbu-installed" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into $SHARED"
  # An older bootstrap installed one checkout here (editable): that tied every other
  # checkout to it. The shared venv holds dependencies only.
  if "$SHARED/bin/pip" show -q anbu >/dev/null 2>&1; then
    "$SHARED/bin/pip" uninstall -q -y anbu
  fi
  # shellcheck disable=SC2086  # one requirement a line, none with spaces
  printf '%s\n' "$reqs" | "$SHARED/bin/pip" install -q -r /dev/stdin
  echo "$want" > "$SHARED/.anbu-installed"
fi

# --- this checkout's venv ---------------------------------------------------------------------
if [ ! -x "$HERE/bin/python" ]; then
  "$PY" -m venv --without-pip "$HERE"
fi
printf '%s\n' "$ROOT" > "$HERE/../checkout"
site="$("$HERE/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
shared_site="$("$SHARED/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
# The checkout first ("a" sorts before "z"), then the shared site-packages with its own .pth
# files processed (site.addsitedir), so `import anbu` is always this checkout's code.
printf '%s\n' "$ROOT" > "$site/a-anbu-checkout.pth"
printf 'import site; site.addsitedir(%s)\n' "'$shared_site'" > "$site/z-anbu-shared.pth"
# Console scripts: anbu, and the tools the Makefile runs, all with this venv's interpreter.
cat > "$HERE/bin/anbu" <<EOF
#!$HERE/bin/python
import sys
from anbu.cli import main
sys.exit(main())
EOF
for tool in pytest ruff mypy schemathesis; do  # schemathesis: tests/test_openapi_contract.py
  [ -e "$SHARED/bin/$tool" ] || continue
  if [ "$tool" = ruff ]; then  # a native binary, no interpreter to choose
    ln -sf "$SHARED/bin/ruff" "$HERE/bin/ruff"
    continue
  fi
  sed "1s|^#!.*|#!$HERE/bin/python|" "$SHARED/bin/$tool" > "$HERE/bin/$tool"
done
chmod +x "$HERE"/bin/*
ln -sfn "$HERE" "$ROOT/.venv"
# A checkout that was deleted leaves its small venv behind: remove those.
for marker in "$CACHE"/checkouts/*/checkout; do
  [ -f "$marker" ] || continue
  [ -d "$(cat "$marker")" ] || rm -rf "$(dirname "$marker")"
done
# Checked from outside the checkout: the import must find this checkout through the venv.
(cd / && "$HERE/bin/python" -c "import anbu, sys; sys.exit(0 if anbu.__file__.startswith('$ROOT/') else 1)") \
  || { echo "bootstrap: $HERE does not import anbu from $ROOT" >&2; exit 1; }

"$HERE/bin/anbu" asterisk install
