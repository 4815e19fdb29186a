#!/usr/bin/env bash
# make docker-test: the container deployment, tested for real on this machine.
#
# Installs Debian's docker.io, docker-compose and debootstrap when missing (root), starts dockerd
# itself when none answers (and stops exactly that PID at the end), builds the base image
# anbu/base:bookworm with debootstrap unless it exists (no registry is reachable), builds the
# images, brings up compose.yml + compose.test.yml on host networking with the sample env file
# (secrets filled with random values), sends a check-in through the stack's Asterisk to the
# carrier stand-in (and one that asks for help, whose SMS must reach Kannel's fake SMSC), checks
# both, and tears everything down (volumes included). Every port is the env file's: none
# collides with `make run` (15060..., 14000..., 8080) or the host's PostgreSQL (5432).
#
# ANBU_DOCKER_NODES=2 runs the two-node variant (compose.two-node.yml) and adds a campaign of
# ANBU_DOCKER_CAMPAIGN (40) check-ins that both dispatchers race for and spread over both engines
# (ANBU_NODES): every one must end ok after one attempt, the carrier must count exactly one call
# per check-in, and both engines must have dialled. Then engine 2 is SIGKILLed: 10 check-ins
# must all go through engine 1 (one attempt each); Docker restarts engine 2 and a last campaign
# must reach it again (it rejoins by itself). ANBU_DOCKER_KEEP=1 leaves the stack up for a look (then: compose ... down -v).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ANBU_CACHE=${ANBU_CACHE:-$HOME/.cache/anbu}
WORK=${ANBU_DOCKER_WORK:-$ANBU_CACHE/docker-test}
BASE_IMAGE=anbu/base:bookworm
PROJECT=anbu-test
START=$SECONDS
mkdir -p "$WORK"

log() { printf '[docker-test %4ss] %s\n' "$((SECONDS - START))" "$*"; }
die() { log "FAILED: $*"; exit 1; }

# --- 1. packages --------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || die "needs root to apt-get install ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 \
        || { apt-get update -q >>"$WORK/apt.log" 2>&1 \
             && apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; } \
        || die "apt-get install failed (see $WORK/apt.log)"
fi

# --- 2. the daemon ------------------------------------------------------------------------------
DOCKERD_PID=""
STACK_UP=""
ENV_FILE="$WORK/anbu.env"
export ANBU_ENV_FILE="$ENV_FILE"
NODES=${ANBU_DOCKER_NODES:-1}
files=(-f docker/compose.yml -f docker/compose.test.yml)
[ "$NODES" = 2 ] && files+=(-f docker/compose.two-node.yml)
compose() { docker-compose -p "$PROJECT" "${files[@]}" "$@"; }

cleanup() {
    local rc=$?
    if [ -n "$STACK_UP" ] && [ -z "${ANBU_DOCKER_KEEP:-}" ]; then
        if [ "$rc" != 0 ]; then
            compose ps >"$WORK/ps.log" 2>&1 || true
            compose logs --no-color >"$WORK/compose.log" 2>&1 || true
            log "logs kept in $WORK/compose.log"
        fi
        log "tearing down"
        compose down -v --remove-orphans >"$WORK/down.log" 2>&1 || true
    fi
    if [ -n "$DOCKERD_PID" ] && [ -z "${ANBU_DOCKER_KEEP:-}" ]; then
        log "stopping dockerd (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    fi
    log "total $((SECONDS - START)) s, exit $rc"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "no docker daemon answers and starting one needs root"
    log "starting dockerd"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || die "dockerd did not answer (see $WORK/dockerd.log)"
fi

# --- 3. the base image --------------------------------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE: cached"
else
    # The Debian archive apt already uses (no other address is reachable here).
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "building $BASE_IMAGE with debootstrap from $mirror"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || die "debootstrap failed (see $WORK/debootstrap.log)"
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

# --- 4. the env file: the sample, secrets filled ------------------------------------------------
# The callback token appears in three lines (it must be the same); every other CHANGE_ME gets
# its own value.
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
awk -v token="$token" '
    /^ANBU_ESCALATION__CALLBACK_TOKEN=|^ANBU_SMS__KANNEL_(DLR|MO)_URL=/ { gsub("CHANGE_ME", token) }
    /CHANGE_ME/ { cmd = "od -An -N16 -tx1 /dev/urandom | tr -d \" \\n\""; cmd | getline s; close(cmd); gsub("CHANGE_ME", s) }
    { print }' docker/anbu.env.example >"$ENV_FILE"
if [ "$NODES" = 2 ]; then
    # A carrier's per-engine call rate (CPS): one dispatcher alone cannot take the whole
    # campaign, so both engines must dial.
    echo "ANBU_SCHEDULING__CALLS_PER_SECOND=2" >>"$ENV_FILE"
    # Both engines as nodes of both dispatchers (engine 2's AMI port is compose.two-node.yml's),
    # with one AMI secret.
    secret=$(sed -n 's/^ANBU_ENGINE__AMI_SECRET=//p' "$ENV_FILE")
    ami1=$(sed -n 's/^ANBU_ENGINE__AMI_PORT=//p' "$ENV_FILE")
    node='{"name":"%s","ami_port":%s,"ami_secret":"%s","max_calls":15}'
    printf "ANBU_NODES=[$node,$node]\n" engine "$ami1" "$secret" engine2 25040 "$secret" >>"$ENV_FILE"
fi
chmod 600 "$ENV_FILE"
api_port=$(sed -n 's/^ANBU_API_PORT=//p' "$ENV_FILE")
api="http://127.0.0.1:$api_port"

# --- 5. build and start -------------------------------------------------------------------------
# The machine's own extra certificate authorities (a TLS-inspecting proxy in front of PyPI)
# go into the anbu image's trust store; nothing when there are none.
find docker/extra-ca -name '*.crt' -delete
for crt in /usr/local/share/ca-certificates/*.crt; do
    if [ -f "$crt" ]; then cp "$crt" docker/extra-ca/; fi
done
log "building images"
compose build >"$WORK/build.log" 2>&1 || die "build failed (see $WORK/build.log)"
compose down -v --remove-orphans >/dev/null 2>&1 || true  # a run killed half-way
STACK_UP=1
log "starting the stack"
compose up -d >"$WORK/up.log" 2>&1 || die "up failed (see $WORK/up.log)"
# wait_healthy SERVICE SECONDS: until the service's health check passes; its last status in $health.
wait_healthy() {
    for _ in $(seq 1 "$2"); do
        health=$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$1")" 2>/dev/null || true)
        [ "$health" = healthy ] && return 0
        sleep 1
    done
    return 1
}
wait_healthy anbu 120 || die "anbu not healthy (status: ${health:-none})"
log "stack healthy: $(compose ps --services | tr '\n' ' ')"

# --- 6. the first admin key comes from `anbu key create`, as in production -----------------------
key=$(compose exec -T anbu anbu key create docker-test --admin 2>/dev/null | tail -1)
[ -n "$key" ] || die "anbu key create printed no key"

# --- 7. a check-in to the carrier stand-in, one that pages an official by SMS --------------------
log "check-ins through the engine container to the carrier container"
python3 docker/smoke.py "$api" "$key" || die "check-ins"
log "waiting for the official's SMS at the fake SMSC"
py="$ANBU_CACHE/venv/bin/python"
[ -x "$py" ] || py=python3
got=""
for _ in $(seq 1 60); do
    if compose logs --no-color fakesmsc 2>/dev/null | sed 's/^[^|]*| //' \
        | PYTHONPATH="$ROOT" "$py" docker/smoke.py sms; then
        got=1
        break
    fi
    sleep 1
done
[ -n "$got" ] || die "no SMS for the official reached the fake SMSC"

# --- 8. two nodes: a campaign both dispatchers race for --------------------------------------------
calls_processed() {  # what an Asterisk container counted itself
    compose exec -T "$1" sh -c \
        "asterisk -C /var/lib/anbu/asterisk/\$ASTERISK_NAME/etc/asterisk.conf -rx 'core show calls'" \
        | awk '/calls? processed/ {print $1}'
}
if [ "$NODES" = 2 ]; then
    n=${ANBU_DOCKER_CAMPAIGN:-40}
    # The carrier's count before: the two check-ins above and the help call's transfer leg
    # to the official (who does not answer there).
    before=$(calls_processed carrier)
    log "two nodes: $n check-ins for two dispatchers"
    python3 docker/smoke.py "$api" "$key" campaign "$n" || die "campaign"
    carrier=$(calls_processed carrier)
    e1=$(calls_processed asterisk)
    e2=$(calls_processed asterisk2)
    log "calls processed: carrier $before + $((carrier - before)), engine $e1, engine2 $e2"
    [ "$carrier" = "$((before + n))" ] || die "the carrier took $((carrier - before)) calls for $n check-ins"
    [ "${e1:-0}" -gt 0 ] && [ "${e2:-0}" -gt 0 ] || die "one engine dialled nothing"

    # Every one of 10 check-ins placed right after the kill must end ok after one attempt: no
    # call goes to the dead engine. Docker restarts engine2 within seconds (restart policy), so
    # it may take some of them again once it is back.
    log "two nodes: engine2 SIGKILLed; 10 check-ins, none may be lost to it"
    pid=$(docker inspect -f '{{.State.Pid}}' "$(compose ps -q asterisk2)")
    kill -9 "$pid"
    python3 docker/smoke.py "$api" "$key" campaign 10 || die "campaign with engine2 killed"
    wait_healthy asterisk2 60 || die "engine2 not restarted (status: ${health:-none})"
    restarts=$(docker inspect -f '{{.RestartCount}}' "$(compose ps -q asterisk2)")
    [ "$restarts" -ge 1 ] || die "engine2 was not restarted after the kill"
    took1=$(($(calls_processed asterisk) - e1))
    rejoin=$(calls_processed asterisk2)  # counted since its restart
    log "after the kill: engine took $took1, engine2 (restarted $restarts time) ${rejoin:-0}"
    [ "$((took1 + ${rejoin:-0}))" = 10 ] || die "the engines took $((took1 + rejoin)) of 10 calls"
    [ "$(calls_processed carrier)" = "$((carrier + 10))" ] || die "the carrier did not get 10 calls"
    for _ in 1 2 3; do  # it rejoins by itself: a campaign reaches it again
        [ "${rejoin:-0}" -gt 0 ] && break
        python3 docker/smoke.py "$api" "$key" campaign "$n" || die "campaign after engine2's restart"
        rejoin=$(calls_processed asterisk2)
    done
    log "engine2 took ${rejoin:-0} calls after its restart"
    [ "${rejoin:-0}" -gt 0 ] || die "engine2 did not rejoin"
fi
log "PASSED"
