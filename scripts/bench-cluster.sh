#!/usr/bin/env bash
# What one Redis and a 3-master Redis Cluster cost per stroke op (docs/BENCHMARKS.md, "Redis
# Cluster"). For each store: Redis (one server, or 3 masters joined with redis-cli --cluster
# create, optionally with a replica each), two drawbridge instances on it (redis_mode to match,
# pubsub_mode sharded), the same load from loadtest, then: strokes acknowledged per second, and
# the CPU the Redis processes spent (masters; replicas apart) per acknowledged stroke. Stops
# everything it started after each run.
#
#   scripts/bench-cluster.sh                       # stores: single cluster cluster-wait
#   STORES="single cluster" CONNECTIONS=200 STROKES_PER_SEC=10 scripts/bench-cluster.sh
#
# Environment: STORES, CONNECTIONS (160), ROOMS (80), STROKES_PER_SEC (5 per connection),
# DURATION (10s), BIN_DIR (drawbridge and loadtest; default the release build), OUT_DIR.
# cluster-wait: 3 masters with one replica each and redis_wait_replicas = 1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
stores=${STORES:-single cluster cluster-wait}
connections=${CONNECTIONS:-160}
rooms=${ROOMS:-80}
rate=${STROKES_PER_SEC:-5}
duration=${DURATION:-10s}
out_dir=${OUT_DIR:-${CARGO_TARGET_DIR:-$root/target}/bench-cluster/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out_dir"
# shellcheck source=lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"
require_bins "$bin" drawbridge loadtest

# Free ports whose port + 10000 (a cluster node's bus) is free too.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
found, held = [], []
while len(found) < int(sys.argv[1]):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; held.append(s)
    if port > 55000:
        continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 10000)); found.append(port)
    except OSError:
        pass
    b.close()
print(*found)
for s in held:
    s.close()
EOF
}
clk_tck=$(getconf CLK_TCK)
cpu_s() { sed 's/.*) //' "/proc/$1/stat" | awk -v t="$clk_tck" '{ printf "%.2f", ($12 + $13) / t }'; }
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

printf '| store | strokes/s acknowledged | Redis CPU, masters (%% of a core) | Redis CPU per stroke, masters (µs) | replicas CPU (%%) | loadtest |\n'
printf '|---|---|---|---|---|---|\n'
for store in $stores; do
    case $store in
        single) n_nodes=1 replicas=0 ;;
        cluster) n_nodes=3 replicas=0 ;;
        cluster-wait) n_nodes=6 replicas=1 ;;
        *) echo "unknown store $store" >&2; exit 2 ;;
    esac
    read -r -a ports < <(free_ports $((n_nodes + 2)))
    node_pids=()
    for ((i = 0; i < n_nodes; i++)); do
        dir="$out_dir/$store-node$i"
        mkdir -p "$dir"
        cluster_args=()
        [[ $store == single ]] || cluster_args=(--cluster-enabled yes --cluster-config-file "$dir/nodes.conf")
        redis-server --bind 127.0.0.1 --port "${ports[i]}" --save '' --appendonly no --dir "$dir" \
            "${cluster_args[@]}" --logfile "$dir/redis.log" &
        pids+=($!)
        node_pids+=($!)
    done
    for ((i = 0; i < n_nodes; i++)); do
        for _ in $(seq 100); do redis-cli -p "${ports[i]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    mode=standalone
    wait_replicas=0
    if [[ $store != single ]]; then
        mode=cluster
        nodes=()
        for ((i = 0; i < n_nodes; i++)); do nodes+=("127.0.0.1:${ports[i]}"); done
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >/dev/null
        for _ in $(seq 200); do redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
        [[ $replicas == 0 ]] || wait_replicas=1
        sleep 1
    fi
    inst_ports=("${ports[@]:n_nodes:2}")
    urls=()
    for i in 0 1; do
        DRAWBRIDGE_LISTEN=127.0.0.1:${inst_ports[i]} \
        DRAWBRIDGE_REDIS_URL=redis://127.0.0.1:${ports[0]} \
        DRAWBRIDGE_REDIS_MODE=$mode \
        DRAWBRIDGE_REDIS_WAIT_REPLICAS=$wait_replicas \
        DRAWBRIDGE_PUBSUB_MODE=sharded \
        DRAWBRIDGE_JWT_SECRET=$secret \
        DRAWBRIDGE_INSTANCE_ID=i$i \
        DRAWBRIDGE_WS_UPGRADES_PER_MINUTE=0 \
        DRAWBRIDGE_ROOM_RATE_LIMIT=0 \
        DRAWBRIDGE_MAX_ROOMS_PER_IP=0 \
        DRAWBRIDGE_LOG=warn \
        DRAWBRIDGE_DRAIN_SECS=1 \
            "$bin/drawbridge" >"$out_dir/drawbridge-$store-$i.log" 2>&1 &
        pids+=($!)
        urls+=(--url "ws://127.0.0.1:${inst_ports[i]}")
    done
    for i in 0 1; do
        for _ in $(seq 100); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${inst_ports[i]}/readyz") == 200 ]] && break
            sleep 0.1
        done
    done
    # Which processes are masters (a cluster-wait replica spends CPU on replication only).
    masters=() replica_pids=()
    for ((i = 0; i < n_nodes; i++)); do
        if [[ $store == single ]] || redis-cli -p "${ports[i]}" role | head -1 | grep -q master; then
            masters+=("${node_pids[i]}")
        else
            replica_pids+=("${node_pids[i]}")
        fi
    done
    sum_cpu() { local t=0; for p in "$@"; do t=$(python3 -c "print($t + $(cpu_s "$p"))"); done; echo "$t"; }
    m0=$(sum_cpu "${masters[@]}")
    r0=$(sum_cpu "${replica_pids[@]}")
    started=$(date +%s.%N)
    verdict=pass
    LOADTEST_JWT_SECRET=$secret "$bin/loadtest" --connections "$connections" --rooms "$rooms" \
        --strokes-per-sec "$rate" --duration "$duration" --warmup 2s --ramp-up 2s --drain 5s \
        "${urls[@]}" --out "$out_dir/result-$store.json" -q >"$out_dir/loadtest-$store.log" 2>&1 ||
        verdict="FAIL ($?)"
    elapsed=$(python3 -c "import time; print(time.time() - $started)")
    m1=$(sum_cpu "${masters[@]}")
    r1=$(sum_cpu "${replica_pids[@]}")
    # Every stroke the gateways committed during the run: the rooms' seqs, from Redis itself.
    strokes=0
    for ((i = 0; i < n_nodes; i++)); do
        calls=$(redis-cli -p "${ports[i]}" info commandstats | tr -d '\r' |
            awk -F'[=,:]' '$1 == "cmdstat_evalsha" { print $3 }')
        strokes=$((strokes + ${calls:-0}))
    done
    python3 -c "
ops, t, m, r = $strokes, $elapsed, $m1 - $m0, $r1 - $r0
print(f'| $store | {ops / t:.0f} | {m / t * 100:.1f} | {m / max(ops, 1) * 1e6:.1f} | {r / t * 100:.1f} | $verdict |')"
    stop_all
done
echo "logs and loadtest results: $out_dir (strokes counted as EVALSHA calls: every join, op and leave)" >&2
