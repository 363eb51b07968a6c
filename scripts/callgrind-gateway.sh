#!/usr/bin/env bash
# Runs the gateway under valgrind's callgrind, for the load harness's LOAD_GATEWAY_BIN
# (docs/performance.md, "Profile"). Instruction counts do not depend on how busy the machine
# is, which makes them the measure of choice on a shared machine.
#
#   CALLGRIND_GATEWAY=<a release build with symbols> CALLGRIND_DIR=/tmp/cg \
#   LOAD_GATEWAY_BIN=scripts/callgrind-gateway.sh LOAD_STOP_GRACE_S=60 cargo bench --bench load
#
# Each gateway writes $CALLGRIND_DIR/callgrind.out.<pid>, and its PID to $CALLGRIND_DIR/pids,
# so `callgrind_control -z <pid>` / `-d <pid>` can bracket the cell to be measured.
set -euo pipefail
: "${CALLGRIND_GATEWAY:?a gateway binary with symbols}"
dir="${CALLGRIND_DIR:-/tmp/callgrind-gateway}"
mkdir -p "$dir"
echo "$$" >> "$dir/pids"
exec valgrind --tool=callgrind --quiet --separate-threads=no \
  --callgrind-out-file="$dir/callgrind.out.%p" "$CALLGRIND_GATEWAY" "$@"
