#!/usr/bin/env bash
# A bounded soak run of the gateway on 127.0.0.1 (docs/reliability.md, "Soak").
#
#   scripts/soak.sh [seconds]        default: SOAK_SECONDS, else 1800 (30 minutes)
#
# Starts a contract backend (scripts/soak/backend.py), the gateway (release build, or
# SOAK_GATEWAY_BIN) with that backend and a native stdio backend (server-everything from the
# toolbox; without it, the Python SDK fixture), then scripts/soak/driver.py: SOAK_STREAMS
# notification streams held open (10000), SOAK_CLIENTS callers (8) calling a tool of each
# backend in turn at SOAK_RATE calls/s in total (200). Meanwhile the contract backend is
# killed and restarted every SOAK_RESTART_EVERY seconds (180), and the configuration is
# changed and reloaded with SIGHUP every SOAK_RELOAD_EVERY seconds (120). Every 10 s the
# gateway's RSS, descriptors and CPU, the error rate and the latency go to samples.csv; the
# summary (first minute against last minute, slopes) to summary.json and stdout.
#
# Output: SOAK_OUT (default $CARGO_TARGET_DIR/soak/<UTC time>, CARGO_TARGET_DIR defaulting to
# target/). Everything it starts is stopped by PID when it ends, also on Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-${SOAK_SECONDS:-1800}}"
streams="${SOAK_STREAMS:-10000}"
clients="${SOAK_CLIENTS:-8}"
rate="${SOAK_RATE:-200}"
restart_every="${SOAK_RESTART_EVERY:-180}"
reload_every="${SOAK_RELOAD_EVERY:-120}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="${SOAK_OUT:-$target_dir/soak/$(date -u +%Y%m%dT%H%M%SZ)}"
toolbox="${CORTEX_TOOLBOX_DIR:-$HOME/.cache/cortex-gateway/toolbox}"
python="${SOAK_PYTHON:-python3}"

case "$seconds" in '' | *[!0-9]*) echo "seconds must be a whole number: $seconds" >&2; exit 2 ;; esac
mkdir -p "$out/data"

# Descriptors: each stream holds one in the gateway and one in the driver.
need=$((streams + clients + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
    ulimit -Hn "$need" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "the descriptor limit ($(ulimit -n)) is below the $need this run needs: lower SOAK_STREAMS or raise ulimit -Hn" >&2
    exit 2
fi

if [ -n "${SOAK_GATEWAY_BIN:-}" ]; then
    bin="$SOAK_GATEWAY_BIN"
else
    (cd "$root" && cargo build --release --bin cortex-gateway)
    bin="$target_dir/release/cortex-gateway"
fi

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
gw_port="$(free_port)"
be_port="$(free_port)"

# The native backend.
everything="$toolbox/server-everything/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
node="$toolbox/node/bin/node"
[ -x "$node" ] || node="$(command -v node || true)"
if [ -f "$everything" ] && [ -n "$node" ]; then
    native_cmd="$node"
    native_args="[\"$everything\", stdio]"
    native_tool="ev_echo"
elif [ -x "$toolbox/venv/bin/python" ]; then
    native_cmd="$toolbox/venv/bin/python"
    native_args="[\"$root/tests/python/native_fixture.py\", stdio]"
    native_tool="ev_echo"
else
    echo "no native backend: install the toolbox (scripts/toolbox.sh)" >&2
    exit 2
fi

config="$out/gateway.yaml"
write_config() { # $1: the contract backend's timeout, $2: the server name (what a reload changes)
    cat >"$config.tmp" <<EOF
server:
  listen: [127.0.0.1:$gw_port]
  name: $2
  threads: 2
  limits:
    max_connections: $((streams + clients + 512))
sessions:
  mode: optional
  secret: soak-secret-0123456789abcdef0123456789
  keepalive_interval: 15s
auth:
  mode: none
  principal:
    sub: soak
    scopes: ["*"]
technical_token: soak-technical-token
data_dir: $out/data
# One caller makes every request here: no per-caller limit. The audit trail is written to
# its store (SQLite in data_dir), not to stdout.
rate_limits:
  enabled: false
audit:
  stdout: false
backends:
  - id: soakc
    url: http://127.0.0.1:$be_port
    timeout: $1
  - id: ev
    kind: stdio
    command: $native_cmd
    args: $native_args
    timeout: 20s
logging:
  level: warn
EOF
    mv "$config.tmp" "$config"
}
write_config 5s soak-a

events="$out/events.log"
: >"$events"
pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [ -f "$out/backend.pid" ] && kill "$(cat "$out/backend.pid")" 2>/dev/null
    if [ -n "${gw_pid:-}" ] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -TERM "$gw_pid"
        for _ in $(seq 1 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$gw_pid" 2>/dev/null
    fi
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_backend() {
    "$python" "$root/scripts/soak/backend.py" "$be_port" >>"$out/backend.log" 2>&1 &
    echo $! >"$out/backend.pid"
}
start_backend

env -i PATH="$PATH" HOME="$HOME" LANG="${LANG:-C.UTF-8}" \
    "$bin" serve --config "$config" >"$out/gateway.log" 2>&1 &
gw_pid=$!
echo "$gw_pid" >"$out/gateway.pid"

ready=""
for _ in $(seq 1 600); do
    if ! kill -0 "$gw_pid" 2>/dev/null; then break; fi
    if "$python" - "$gw_port" <<'EOF' 2>/dev/null; then ready=1; break; fi
import json, sys, urllib.request
body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2))
backends = body.get("backends") or []
sys.exit(0 if body.get("ready") and len(backends) == 2 and all(b["healthy"] and b["tools"] for b in backends) else 1)
EOF
    sleep 0.5
done
if [ -z "$ready" ]; then
    echo "the gateway did not become ready; its log:" >&2
    tail -50 "$out/gateway.log" >&2
    exit 1
fi
echo "[soak] gateway pid $gw_pid on 127.0.0.1:$gw_port, out: $out, ${seconds}s, $streams streams, $clients clients at ${rate}/s"

# The contract backend is restarted every few minutes.
(
    while sleep "$restart_every"; do
        kill "$(cat "$out/backend.pid")" 2>/dev/null
        sleep 2
        start_backend
        echo "$(date +%s) restart" >>"$events"
    done
) &
pids+=($!)

# The configuration changes and is reloaded every few minutes.
(
    n=0
    while sleep "$reload_every"; do
        n=$((n + 1))
        if [ $((n % 2)) = 1 ]; then write_config 6s soak-b; else write_config 5s soak-a; fi
        kill -HUP "$gw_pid"
        echo "$(date +%s) reload" >>"$events"
    done
) &
pids+=($!)

"$python" "$root/scripts/soak/driver.py" \
    --port "$gw_port" --gateway-pid "$gw_pid" --seconds "$seconds" \
    --streams "$streams" --clients "$clients" --rate "$rate" \
    --tool soakc_echo --tool "$native_tool" \
    --csv "$out/samples.csv" --events "$events" --summary "$out/summary.json"

if ! kill -0 "$gw_pid" 2>/dev/null; then
    echo "the gateway died during the run; its log:" >&2
    tail -50 "$out/gateway.log" >&2
    exit 1
fi
# grep -c exits 1 when it counts nothing: not a failure of the run.
echo "[soak] gateway log lines with panic/ERROR: $(grep -c -i -E 'panic|ERROR' "$out/gateway.log" || true)"
echo "[soak] samples: $out/samples.csv  summary: $out/summary.json"
