#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests talk to when it is missing
# (redis-server; for the browser tests chromium and nginx; needs root and apt), then runs the
# Rust suites (unit, engine, gateway, Redis faults, process, loadtest smoke) and the browser
# end-to-end tests. Every server is private, on free loopback ports, and stopped afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test: please install ${need[*]}" >&2
    exit 1
  fi
fi

cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast

# Browser end-to-end: Debian's Chromium against two instances behind nginx, with Redis.
# e2e/run.sh installs chromium and nginx when missing (as root) and the node packages.
DRAWBRIDGE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/drawbridge" bash e2e/run.sh
