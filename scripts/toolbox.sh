#!/usr/bin/env bash
# Installs the third-party tools the test suite talks to, pinned and idempotently, into a cache
# directory OUTSIDE the clone, so repeated runs (and repeated CI runs on one machine) reuse them.
#
#   CORTEX_TOOLBOX_DIR   where to install (default: $HOME/.cache/cortex-gateway/toolbox)
#
# Components (one stamp file per component holds the pinned version; a matching stamp means
# "already installed", so a second run installs nothing and says so):
#   python-mcp   a Python virtualenv with the official MCP SDK (`mcp`), at $DIR/venv
#
# To add a component (node 22, the MCP conformance suite, the inspector, oidc-provider), write an
# `install_<name>` function and call it through `component <name> <version> install_<name> check_<name>`
# at the bottom; print its location in `summary`.
set -euo pipefail

TOOLBOX_DIR="${CORTEX_TOOLBOX_DIR:-$HOME/.cache/cortex-gateway/toolbox}"
STAMPS="$TOOLBOX_DIR/stamps"

# Pinned versions. Change a pin and the next run reinstalls that component.
MCP_PY_VERSION="2.3.0"

log() { printf 'toolbox: %s\n' "$*" >&2; }

# component NAME VERSION INSTALLER [CHECK]: runs INSTALLER unless the stamp says VERSION is
# installed and CHECK (if given) confirms the install is still there and works.
component() {
    local name="$1" version="$2" installer="$3" check="${4:-true}"
    local stamp="$STAMPS/$name"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
        if "$check" "$version"; then
            log "$name $version already installed (stamp $stamp), nothing to do"
            return 0
        fi
        log "$name $version: stamp present but the install is broken; reinstalling"
    fi
    log "installing $name $version"
    "$installer" "$version"
    mkdir -p "$STAMPS"
    printf '%s\n' "$version" >"$stamp.tmp"
    mv "$stamp.tmp" "$stamp"
    log "$name $version installed"
}

install_python_mcp() {
    local version="$1" venv="$TOOLBOX_DIR/venv"
    if ! command -v python3 >/dev/null 2>&1; then
        log "python3 not found: install it (Debian: apt-get install -y python3 python3-venv)"
        exit 1
    fi
    # A half-built venv from an interrupted run is rebuilt from scratch.
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        log "python3 -m venv failed: install the venv module (Debian: apt-get install -y python3-venv)"
        exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp==$version"
    "$venv/bin/python" -c "import mcp, httpx2" || {
        log "the mcp SDK installed but does not import"
        exit 1
    }
}

check_python_mcp() {
    "$TOOLBOX_DIR/venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$1')" >/dev/null 2>&1
}

summary() {
    log "toolbox ready in $TOOLBOX_DIR"
    log "  python (with mcp==$MCP_PY_VERSION): $TOOLBOX_DIR/venv/bin/python"
}

mkdir -p "$TOOLBOX_DIR"
component python-mcp "$MCP_PY_VERSION" install_python_mcp check_python_mcp
summary
