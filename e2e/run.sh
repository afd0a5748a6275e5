#!/usr/bin/env bash
# End-to-end browser tests: builds nothing, starts everything it needs on free loopback ports, and
# leaves nothing running. Usage (from anywhere): e2e/run.sh [test files, default: all of e2e/]
#   DRAWBRIDGE_BIN  server binary (default: target/debug/drawbridge under the repo root)
#   CHROMIUM_BIN    browser (default: /usr/bin/chromium)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"

# System tools: Debian's Chromium, nginx and Redis. Install them only when we can (root) and must.
scripts/ensure-packages "${CHROMIUM_BIN:-chromium}=chromium" nginx=nginx-light \
  redis-server=redis-server
# Debian starts services on install; the tests run their own private copies.
for svc in nginx redis-server; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done

bin="${DRAWBRIDGE_BIN:-target/debug/drawbridge}"
if [[ ! -x "$bin" ]]; then
  echo "e2e: no server binary at $bin (run cargo build, or set DRAWBRIDGE_BIN)" >&2
  exit 1
fi

if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

rm -rf "$here/artifacts"
mkdir -p "$here/artifacts"

# Temp dirs (nginx prefix, Redis dir, browser profiles) go under one private TMPDIR, removed at the end
# even when the run is killed half way.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-e2e-run.XXXXXX")"
export TMPDIR="$tmp"

# The test process leads its own process group (setsid), so whatever it leaves behind (servers,
# nginx workers) goes with it; Chromium exits when its driver's pipe closes.
if (($#)); then tests=("$@"); else tests=(e2e/); fi
setsid node --test --test-concurrency=1 "${tests[@]}" &
pid=$!
cleanup() {
  if kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
status=0
wait "$pid" || status=$?
exit "$status"
