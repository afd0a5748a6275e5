#!/usr/bin/env bash
# Issue 15, finding 12: how long a quiet room's strokes take to reach the other instance, alone
# and while another room is flooded (strokes at the rate limit, strokes near the frame cap,
# frames over it, malformed frames) and a room of 5,000 elements is joined again and again.
# Two in-process instances and a private redis-server on free loopback ports; release build.
# Prints p50/p99/max; the figures go to docs/RELIABILITY.md (finding 12).
#   ISOLATION_OPS=1000 scripts/bench-isolation.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ISOLATION_OPS="${ISOLATION_OPS:-1000}" cargo test --release --test isolation \
    -- --ignored --nocapture quiet_room_latency_under_noise
