#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests talk to when it is missing
# (redis-server; for the browser tests chromium and nginx; needs root and apt), then runs the
# Rust suites (unit, engine, gateway, Redis faults, process, loadtest smoke) and the browser
# end-to-end tests. Every server is private, on free loopback ports, and stopped afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-packages redis-server=redis-server

cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast

# Browser end-to-end: Debian's Chromium against two instances behind nginx, with Redis.
# e2e/run.sh installs chromium and nginx when missing (as root) and the node packages.
DRAWBRIDGE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/drawbridge" bash e2e/run.sh
