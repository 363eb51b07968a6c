#!/usr/bin/env bash
# Builds the container image from a host-built binary, starts it, and checks it for real:
# /healthz, an MCP initialize + tools/call through the container to a contract backend on the
# host, Docker's own HEALTHCHECK, the non-root user, a writable data directory, a clean stop on
# SIGTERM, and the image size. Needs no registry: the runtime base image is made from Debian
# packages (debootstrap + docker import) and cached.
#
#   scripts/docker-smoke.sh                  # builds the release binary first (cargo)
#   scripts/docker-smoke.sh --binary PATH    # uses that binary (the test suite passes its own)
#
# Uses the Docker engine that `docker info` reaches; when none answers and dockerd is installed
# (Debian: apt-get install docker.io), starts a private one (--bridge=none, its own socket) and
# stops it at the end. Containers run with --network host and listen on 127.0.0.1 only.
# Needs root for debootstrap and for a private engine (or an engine you may use).
#
#   CORTEX_DOCKER_CACHE  cache (base image tarball, private engine data); default
#                        $HOME/.cache/cortex-gateway/docker
#   DEBIAN_SUITE         Debian release of the runtime base; default: the host's (the binary
#                        links the host's glibc)
#   DEBIAN_MIRROR        Debian archive for debootstrap; default: the host's apt sources
#   SMOKE_IMAGE          tag of the built image; default cortex-gateway:smoke (kept, replaced
#                        by the next run)
#
# Idempotent: a second run reuses the cached base image. Every wait is bounded. Exit 0 when
# every check passed; non-zero with the reason otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER="$ROOT/scripts/docker/smoke_peer.py"
CACHE="${CORTEX_DOCKER_CACHE:-$HOME/.cache/cortex-gateway/docker}"
IMAGE="${SMOKE_IMAGE:-cortex-gateway:smoke}"
TECHNICAL_TOKEN="smoke-technical-token"

BINARY=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "docker-smoke: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "docker-smoke: $*"; }
fail() { echo "docker-smoke: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for tool in python3 curl flock timeout tar; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
command -v docker >/dev/null 2>&1 \
    || fail "no docker client: install Debian's docker.io (apt-get install docker.io)"

mkdir -p "$CACHE"
# One run at a time per cache: the private engine's data and the base image are shared.
exec 9>"$CACHE/lock"
flock -w 1200 9 || fail "another docker-smoke run holds $CACHE/lock (waited 20 minutes)"

STATE="$(mktemp -d /tmp/cortex-docker-smoke.XXXXXX)"
DOCKERD_PID=""
BACKEND_PID=""
CONTAINER="cortex-gateway-smoke-$$"
STARTED="$(now)"

cleanup() {
    local rc=$?
    set +e
    if [[ -n "${DOCKER_READY:-}" ]]; then
        timeout 30 docker rm -f "$CONTAINER" >/dev/null 2>&1
    fi
    if [[ -n "$BACKEND_PID" ]]; then
        kill "$BACKEND_PID" 2>/dev/null
        wait "$BACKEND_PID" 2>/dev/null
    fi
    if [[ -n "$DOCKERD_PID" ]]; then
        # Our private engine: drop the dangling layers and build cache of earlier builds (the
        # binary differs every time), then stop it.
        timeout 60 docker image prune -f >/dev/null 2>&1
        timeout 60 docker builder prune -f >/dev/null 2>&1
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            echo "docker-smoke: dockerd did not stop in 30 s; killing it" >&2
            kill -KILL "$DOCKERD_PID" 2>/dev/null
        fi
        wait "$DOCKERD_PID" 2>/dev/null
        # dockerd leaves its network namespace mounted under the exec root.
        awk -v state="$STATE/" 'index($5, state) == 1 { print $5 }' /proc/self/mountinfo \
            | sort -r | while read -r mount; do umount -l "$mount"; done
    fi
    rm -rf "$STATE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the binary -------------------------------------------------------------------------------
if [[ -z "$BINARY" ]]; then
    say "building the release binary (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked)
    BINARY="${CARGO_TARGET_DIR:-$ROOT/target}/release/cortex-gateway"
fi
[[ -x "$BINARY" ]] || fail "binary $BINARY does not exist or is not executable"
"$BINARY" --version >/dev/null || fail "$BINARY does not run on this host"

# ---- the engine -------------------------------------------------------------------------------
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }
if engine_answers; then
    say "using the running Docker engine"
else
    command -v dockerd >/dev/null 2>&1 \
        || fail "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    [[ "$(id -u)" == "0" ]] || fail "no Docker engine answers, and starting one needs root"
    say "starting a private Docker engine (log: $STATE/dockerd.log)"
    dockerd --bridge=none --iptables=false --ip-masq=false \
        --host "unix://$STATE/docker.sock" --data-root "$CACHE/engine" \
        --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
        >"$STATE/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    export DOCKER_HOST="unix://$STATE/docker.sock"
    for _ in $(seq 1 120); do
        engine_answers && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    engine_answers || { tail -20 "$STATE/dockerd.log" >&2; fail "dockerd did not come up in 60 s"; }
fi
DOCKER_READY=1

# ---- the runtime base image: Debian minbase, made offline-friendly with debootstrap ------------
# shellcheck disable=SC1091
SUITE="${DEBIAN_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}"
[[ -n "$SUITE" ]] || fail "cannot tell the host's Debian release; set DEBIAN_SUITE"
BASE="cortex-gateway-base:$SUITE"
BASE_TAR="$CACHE/base-$SUITE.tar"

debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    # The first archive that serves $SUITE itself: deb822 stanzas, then one-line entries.
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } | awk -v suite="$SUITE" '
        /^[[:space:]]*$/ { if (has && uri != "") { print uri; done = 1; exit } has = 0; uri = ""; next }
        /^URIs:/ { uri = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
        END { if (!done && has && uri != "") print uri }'
    { grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true; } \
        | sed 's/\[[^]]*\]//' | awk -v suite="$SUITE" '$3 == suite { print $2; exit }'
}

T0="$(now)"
if timeout 30 docker image inspect "$BASE" >/dev/null 2>&1; then
    BASE_HOW="cached image"
else
    if [[ ! -s "$BASE_TAR" ]]; then
        command -v debootstrap >/dev/null 2>&1 \
            || fail "debootstrap is not installed (apt-get install debootstrap)"
        [[ "$(id -u)" == "0" ]] || fail "debootstrap needs root"
        MIRROR="$(debian_mirror | head -n 1)"
        [[ -n "$MIRROR" ]] || fail "no Debian archive in the apt sources; set DEBIAN_MIRROR"
        ROOTFS="$CACHE/rootfs-$SUITE.tmp"
        rm -rf "$ROOTFS"
        say "debootstrap $SUITE (minbase + ca-certificates) into $ROOTFS"
        timeout 1200 debootstrap --variant=minbase --include=ca-certificates \
            "$SUITE" "$ROOTFS" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 \
            || { tail -20 "$STATE/debootstrap.log" >&2; fail "debootstrap failed"; }
        # Only a source of files for the image: package caches and docs are dead weight.
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
            "$ROOTFS"/usr/share/doc "$ROOTFS"/usr/share/man "$ROOTFS"/usr/share/locale
        tar --numeric-owner -C "$ROOTFS" -cf "$BASE_TAR.tmp" .
        mv "$BASE_TAR.tmp" "$BASE_TAR"
        rm -rf "$ROOTFS"
        BASE_HOW="debootstrap + import"
    else
        BASE_HOW="import of the cached tarball"
    fi
    timeout 600 docker import "$BASE_TAR" "$BASE" >/dev/null || fail "docker import $BASE_TAR failed"
fi
BASE_SECONDS="$(since "$T0")"
say "base image $BASE: $BASE_HOW (${BASE_SECONDS} s)"

# ---- the image --------------------------------------------------------------------------------
CONTEXT="$STATE/context"
mkdir -p "$CONTEXT/dist"
cp "$ROOT/Dockerfile" "$CONTEXT/"
cp -r "$ROOT/conf" "$CONTEXT/conf"
cp "$BINARY" "$CONTEXT/dist/cortex-gateway"

T0="$(now)"
timeout 900 docker build --network host --target prebuilt \
    --build-arg "RUNTIME_IMAGE=$BASE" -t "$IMAGE" "$CONTEXT" >"$STATE/build.log" 2>&1 \
    || { tail -30 "$STATE/build.log" >&2; fail "docker build failed"; }
BUILD_SECONDS="$(since "$T0")"
IMAGE_BYTES="$(timeout 30 docker image inspect -f '{{.Size}}' "$IMAGE")"
BINARY_BYTES="$(stat -c %s "$BINARY")"
IMAGE_USER="$(timeout 30 docker image inspect -f '{{.Config.User}}' "$IMAGE")"
say "built $IMAGE in ${BUILD_SECONDS} s"

# ---- run it against a backend on the host -----------------------------------------------------
T0="$(now)"
python3 "$PEER" backend --port-file "$STATE/backend.port" --token "$TECHNICAL_TOKEN" &
BACKEND_PID=$!
for _ in $(seq 1 50); do
    [[ -s "$STATE/backend.port" ]] && break
    sleep 0.1
done
[[ -s "$STATE/backend.port" ]] || fail "the contract backend did not start"
BACKEND_PORT="$(cat "$STATE/backend.port")"
GATEWAY_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

cat >"$STATE/gateway.yaml" <<EOF
# docker-smoke: loopback only (the container shares the host's network), no authentication.
server:
  listen: ["127.0.0.1:$GATEWAY_PORT"]
  grace_period: 2s
auth:
  mode: none
  principal:
    sub: smoke-user
    scopes: ["*"]
    token: smoke-user-token
technical_token: $TECHNICAL_TOKEN
backends:
  - id: smoke
    url: http://127.0.0.1:$BACKEND_PORT
    timeout: 5s
EOF
chmod 0644 "$STATE/gateway.yaml"

# HOSTNAME=127.0.0.1 replaces the image's 0.0.0.0: with --network host, 0.0.0.0 would be every
# interface of the host. The health interval is shortened so the check is seen within seconds.
timeout 60 docker run -d --name "$CONTAINER" --network host \
    -e HOSTNAME=127.0.0.1 --health-interval 1s --health-start-period 20s \
    -v "$STATE/gateway.yaml:/etc/cortex-gateway/gateway.yaml:ro" \
    "$IMAGE" >/dev/null || fail "docker run failed"

container_logs() { timeout 30 docker logs --tail 40 "$CONTAINER" >&2 2>&1 || true; }
running() { [[ "$(timeout 30 docker inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" == "true" ]]; }

HEALTHZ=""
for _ in $(seq 1 120); do
    HEALTHZ="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$GATEWAY_PORT/healthz" || true)"
    [[ "$HEALTHZ" == "200" ]] && break
    running || { container_logs; fail "the container exited before answering /healthz"; }
    sleep 0.25
done
[[ "$HEALTHZ" == "200" ]] || { container_logs; fail "/healthz answered '$HEALTHZ', not 200, within 30 s"; }
say "check: GET /healthz through the container -> 200"

# The catalog is discovered in the background: /readyz answers 200 once the backend was asked.
READY=""
for _ in $(seq 1 120); do
    READY="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$GATEWAY_PORT/readyz" || true)"
    [[ "$READY" == "200" ]] && break
    sleep 0.25
done
[[ "$READY" == "200" ]] || {
    curl -s --max-time 2 "http://127.0.0.1:$GATEWAY_PORT/readyz" >&2 || true
    container_logs
    fail "/readyz answered '$READY', not 200, within 30 s"
}
say "check: GET /readyz through the container -> 200 (the host backend was discovered)"
python3 "$PEER" mcp --url "http://127.0.0.1:$GATEWAY_PORT/mcp" --text "hello through the container" \
    || { container_logs; fail "MCP through the container"; }
say "check: MCP initialize + tools/call through the container to the host backend"

PID="$(timeout 30 docker inspect -f '{{.State.Pid}}' "$CONTAINER")"
[[ -r "/proc/$PID/status" ]] || fail "cannot read /proc/$PID/status (is the engine on another host?)"
UIDS="$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$PID/status")"
GIDS="$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$PID/status")"
[[ "$UIDS" == "10001 10001 10001 10001" && "$GIDS" == "10001 10001 10001 10001" ]] \
    || fail "the gateway process runs as uid ($UIDS) gid ($GIDS), not 10001"
[[ "$IMAGE_USER" == "10001:10001" ]] || fail "the image's USER is '$IMAGE_USER', not 10001:10001"
say "check: the gateway process (pid $PID on the host) runs as uid/gid 10001, not root"

HEALTH=""
for _ in $(seq 1 80); do
    HEALTH="$(timeout 30 docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$CONTAINER")"
    [[ "$HEALTH" == "healthy" || "$HEALTH" == "unhealthy" ]] && break
    sleep 0.25
done
[[ "$HEALTH" == "healthy" ]] || {
    timeout 30 docker inspect -f '{{json .State.Health}}' "$CONTAINER" >&2
    fail "Docker's HEALTHCHECK says '$HEALTH', not healthy"
}
say "check: Docker HEALTHCHECK (cortex-gateway healthcheck) -> healthy"

CHANGES="$(timeout 30 docker diff "$CONTAINER")"
[[ "$CHANGES" == *" /var/lib/cortex-gateway/data/"* ]] \
    || { container_logs; fail "nothing was written under /var/lib/cortex-gateway/data"; }
say "check: the non-root user writes its store under /var/lib/cortex-gateway/data"

timeout 60 docker stop -t 20 "$CONTAINER" >/dev/null || fail "docker stop failed"
EXIT_CODE="$(timeout 30 docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
[[ "$EXIT_CODE" == "0" ]] || { container_logs; fail "after docker stop the gateway exited with $EXIT_CODE, not 0"; }
say "check: docker stop (SIGTERM) -> the gateway exits 0"
RUN_SECONDS="$(since "$T0")"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
say "image $IMAGE: $(mib "$IMAGE_BYTES") (binary $(mib "$BINARY_BYTES"), the rest $(mib $((IMAGE_BYTES - BINARY_BYTES))))"
say "time: base image ${BASE_SECONDS} s ($BASE_HOW), build ${BUILD_SECONDS} s, run and checks ${RUN_SECONDS} s, total $(since "$STARTED") s"
say "ok"
