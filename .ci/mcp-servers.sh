#!/usr/bin/env bash
# Real MCP servers for tests/plugins/mcp (idempotent, quiet): npm servers into .ci/npm and
# mcp-server-time (PyPI) into its own venv .ci/mcp-time, so its pins never touch the project venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >/dev/null 2>&1 \
        || echo "mcp-servers: could not install nodejs/npm; the tests that need them will skip" >&2
fi
NPM_PKGS="server-everything server-filesystem server-memory"
missing=0
for p in $NPM_PKGS; do [ -f ".ci/npm/node_modules/@modelcontextprotocol/$p/dist/index.js" ] || missing=1; done
if [ "$missing" = 1 ] && command -v npm >/dev/null 2>&1; then
    npm install --prefix .ci/npm --no-audit --no-fund --silent $(for p in $NPM_PKGS; do echo "@modelcontextprotocol/$p@2026.8.31"; done)
fi
[ -x .ci/mcp-time/bin/mcp-server-time ] || { python3 -m venv .ci/mcp-time && .ci/mcp-time/bin/pip install -q mcp-server-time==2026.10.19; }
