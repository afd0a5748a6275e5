#!/usr/bin/env bash
# What one more instance costs each instance, per pubsub_mode (docs/BENCHMARKS.md, "pub/sub
# modes"). For each mode and instance count: one redis-server and N drawbridge instances on free
# loopback ports, the same total load from loadtest (rooms of two, each room's pair on two
# different instances), then per instance: CPU and the feed's bytes received
# (drawbridge_feed_bytes_received_total). Stops everything it started after each run.
#
#   scripts/bench-pubsub.sh                  # modes pattern room sharded, N = 2 4 8
#   MODES="pattern room" COUNTS="2 4" scripts/bench-pubsub.sh
#
# Environment: MODES, COUNTS, CONNECTIONS (160), ROOMS (80), STROKES_PER_SEC (2 per
# connection), DURATION (10s), BIN_DIR (target/release: drawbridge and loadtest, built with
# `cargo build --release -p drawbridge -p loadtest`), OUT_DIR (where logs and results go).
# Prints one table row per run; the loadtest's own verdict (no loss, no gap) is in its JSON.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
modes=${MODES:-pattern room sharded}
counts=${COUNTS:-2 4 8}
connections=${CONNECTIONS:-160}
rooms=${ROOMS:-80}
rate=${STROKES_PER_SEC:-2}
duration=${DURATION:-10s}
out_dir=${OUT_DIR:-$root/target/bench-pubsub/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out_dir"
# shellcheck source=lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"
require_bins "$bin" drawbridge loadtest

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
}
clk_tck=$(getconf CLK_TCK)
cpu_s() { sed 's/.*) //' "/proc/$1/stat" | awk -v t="$clk_tck" '{ printf "%.2f", ($12 + $13) / t }'; }
feed_bytes() {
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk '$1 == "drawbridge_feed_bytes_received_total" { printf "%d", $2; found = 1 } END { if (!found) print 0 }'
}
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

printf '| mode | instances | CPU per instance (%% of a core) | feed KiB/s per instance | redis CPU (%%) | loadtest |\n'
printf '|---|---|---|---|---|---|\n'
for mode in $modes; do
    for n in $counts; do
        read -r -a ports < <(free_ports $((n + 1)))
        redis_port=${ports[0]}
        redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
            --logfile "$out_dir/redis-$mode-$n.log" &
        pids+=($!)
        redis_pid=$!
        for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
        inst_pids=()
        urls=()
        for ((i = 1; i <= n; i++)); do
            DRAWBRIDGE_LISTEN=127.0.0.1:${ports[i]} \
            DRAWBRIDGE_REDIS_URL=redis://127.0.0.1:$redis_port \
            DRAWBRIDGE_PUBSUB_MODE=$mode \
            DRAWBRIDGE_JWT_SECRET=$secret \
            DRAWBRIDGE_INSTANCE_ID=i$i \
            DRAWBRIDGE_WS_UPGRADES_PER_MINUTE=0 \
            DRAWBRIDGE_ROOM_RATE_LIMIT=0 \
            DRAWBRIDGE_WORKER_THREADS=1 \
            DRAWBRIDGE_LOG=warn \
            DRAWBRIDGE_DRAIN_SECS=1 \
                "$bin/drawbridge" >"$out_dir/drawbridge-$mode-$n-$i.log" 2>&1 &
            pids+=($!)
            inst_pids+=($!)
            urls+=(--url "ws://127.0.0.1:${ports[i]}")
        done
        for ((i = 1; i <= n; i++)); do
            for _ in $(seq 100); do
                [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${ports[i]}/readyz") == 200 ]] && break
                sleep 0.1
            done
        done
        # Counted from just before the load to just after it: ramp-up, warm-up, the window and
        # the drain, the same for every run.
        declare -a cpu0=() bytes0=()
        for ((i = 1; i <= n; i++)); do
            cpu0[i]=$(cpu_s "${inst_pids[i - 1]}")
            bytes0[i]=$(feed_bytes "${ports[i]}")
        done
        redis_cpu0=$(cpu_s "$redis_pid")
        started=$(date +%s.%N)
        verdict=pass
        LOADTEST_JWT_SECRET=$secret "$bin/loadtest" --connections "$connections" --rooms "$rooms" \
            --strokes-per-sec "$rate" --duration "$duration" --warmup 2s --ramp-up 2s --drain 10s \
            "${urls[@]}" --out "$out_dir/result-$mode-$n.json" -q >"$out_dir/loadtest-$mode-$n.log" 2>&1 ||
            verdict="FAIL ($?)"
        elapsed=$(python3 -c "import time; print(time.time() - $started)")
        cpu_sum=0
        bytes_sum=0
        for ((i = 1; i <= n; i++)); do
            cpu_sum=$(python3 -c "print($cpu_sum + $(cpu_s "${inst_pids[i - 1]}") - ${cpu0[i]})")
            bytes_sum=$((bytes_sum + $(feed_bytes "${ports[i]}") - bytes0[i]))
        done
        redis_cpu=$(python3 -c "print(($(cpu_s "$redis_pid") - $redis_cpu0) / $elapsed * 100)")
        python3 -c "
n, cpu, b, t = $n, $cpu_sum, $bytes_sum, $elapsed
print(f'| $mode | {n} | {cpu / n / t * 100:.1f} | {b / n / t / 1024:.1f} | {$redis_cpu:.1f} | $verdict |')"
        stop_all
    done
done
echo "logs and loadtest results: $out_dir" >&2
