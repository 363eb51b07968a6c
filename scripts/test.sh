#!/usr/bin/env bash
# THE test command (README): installs the pinned third-party test tools (scripts/toolbox.sh),
# then runs every test of the workspace. Build output and tools live outside the clone so
# repeated runs on one machine reuse them.
#
#   CARGO_TARGET_DIR     default: $HOME/.cache/cortex-gateway/target
#   CORTEX_TOOLBOX_DIR   default: $HOME/.cache/cortex-gateway/toolbox (read by the tests)
#   extra arguments      passed to `cargo test` (e.g. `scripts/test.sh -- --nocapture`)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-gateway/target}"
export CORTEX_TOOLBOX_DIR="${CORTEX_TOOLBOX_DIR:-$HOME/.cache/cortex-gateway/toolbox}"

bash "$ROOT/scripts/toolbox.sh"

cd "$ROOT"
echo "test.sh: cargo test --workspace --all-targets --no-fail-fast (target dir $CARGO_TARGET_DIR)" >&2
exec cargo test --workspace --all-targets --no-fail-fast "$@"
