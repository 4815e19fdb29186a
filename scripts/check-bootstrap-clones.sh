#!/usr/bin/env bash
# Check that the bootstrap serves any checkout: two clones of this repository's HEAD share one
# $ANBU_CACHE; each runs its own code (also in subprocesses started with sys.executable); the
# first clone's deletion breaks nothing in the second. Uses a throwaway ANBU_CACHE in /tmp
# (never the shared one); ANBU_ASTERISK_FROM=<cache> reuses an unpacked Asterisk from there.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd -P)"
WORK="$(mktemp -d /tmp/anbu-clones.XXXXXX)"
# ANBU_CHECK_CACHE reuses a cache of an earlier run (its dependencies are installed already).
export ANBU_CACHE="${ANBU_CHECK_CACHE:-$WORK/cache}"
unset PYTHONPATH
mkdir -p "$ANBU_CACHE"
if [ -n "${ANBU_ASTERISK_FROM:-}" ] && [ ! -e "$ANBU_CACHE/asterisk" ]; then
  ln -s "$ANBU_ASTERISK_FROM/asterisk" "$ANBU_CACHE/asterisk"
fi
fail() { echo "check-bootstrap-clones: FAIL: $*" >&2; exit 1; }
where_anbu() {  # $1: checkout; prints the anbu package the venv imports, from / and a child
  (cd / && "$1/.venv/bin/python" -c '
import subprocess, sys
import anbu
child = subprocess.check_output([sys.executable, "-c", "import anbu; print(anbu.__file__)"])
print(anbu.__file__, child.decode().strip())')
}

for n in one two; do
  git clone -q "$SRC" "$WORK/$n"
  (cd "$WORK/$n" && scripts/bootstrap.sh)
done
for n in one two; do
  read -r own child <<<"$(where_anbu "$WORK/$n")"
  [[ "$own" == "$WORK/$n/anbu/"* ]] || fail "$n imports $own"
  [[ "$child" == "$WORK/$n/anbu/"* ]] || fail "$n's subprocess imports $child"
  (cd / && "$WORK/$n/.venv/bin/anbu" --help >/dev/null) || fail "$n: anbu --help"
done
(cd / && "$ANBU_CACHE/venv/bin/python" -c 'import anbu' 2>/dev/null) && fail "the shared venv holds anbu"

rm -rf "$WORK/one"
read -r own child <<<"$(where_anbu "$WORK/two")"
[[ "$own" == "$WORK/two/anbu/"* && "$child" == "$WORK/two/anbu/"* ]] || fail "after rm: $own"
(cd "$WORK/two" && make -s lint && .venv/bin/pytest -q -p no:cacheprovider \
  tests/test_retry_policy.py tests/test_sms_text.py) || fail "two: make lint / pytest"
(cd "$WORK/two" && scripts/bootstrap.sh) || fail "two: second bootstrap"
[ -d "$ANBU_CACHE/checkouts/$(printf '%s' "$WORK/one" | sha256sum | cut -c1-16)" ] \
  && fail "the deleted clone's venv was kept"
(cd "$WORK/two" && make -s -n run | grep -q "$ANBU_CACHE/checkouts/") || fail "make run's anbu"
echo "check-bootstrap-clones: OK (two clones, one deleted; $WORK)"
rm -rf "$WORK"
[ -z "${ANBU_CHECK_CACHE:-}" ] || rm -rf "$ANBU_CACHE/checkouts/$(printf '%s' "$WORK/two" | sha256sum | cut -c1-16)"
