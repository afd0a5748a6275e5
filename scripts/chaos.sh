#!/usr/bin/env bash
# Faults under load, on loopback, with every acknowledged op and every client's seq checked
# (issue 15). Not a CI step: it takes minutes and wants a quiet machine. It starts its own Redis
# (a primary and a replica), a switchable TCP proxy in front of them (scripts/tcp-switch.py: the
# address instances are given, as a VIP or a Sentinel-following proxy would be), two release
# instances and the load generator, then stops everything it started.
#
#   scripts/chaos.sh            the chaos run: SIGKILL + restart of an instance, pub/sub clients
#                               killed, Redis paused (DEBUG SLEEP), the replica promoted
#   scripts/chaos.sh storm      the reconnect storm: 5,000 connections, instance a SIGKILLed,
#                               time until every client is back (on b) and caught up
#
# Environment: CONNECTIONS, ROOMS, STROKES_PER_SEC (load), SKIP_BUILD=1, SERVER_BIN,
# LOADTEST_BIN, OUT_DIR (default $CARGO_TARGET_DIR/chaos/<mode>-<time>).
# Output: a results table on stdout and in $OUT_DIR/results.md, loadtest's result.json, logs.
# Exit status: 0 when nothing acknowledged was lost and no client saw a gap or a duplicate.
set -euo pipefail

mode=${1:-chaos}
case $mode in chaos | storm) ;; *) sed -n '2,20p' "$0"; exit 2 ;; esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -p drawbridge -p loadtest
server_bin=${SERVER_BIN:-$target_dir/release/drawbridge}
loadtest_bin=${LOADTEST_BIN:-$target_dir/release/loadtest}
out=${OUT_DIR:-$target_dir/chaos/$mode-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
: >"$out/results.md"
# 5,000 client sockets and as many server-side ones in this process tree.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ $mode == storm ]]; then
    connections=${CONNECTIONS:-5000} rooms=${ROOMS:-500} rate=${STROKES_PER_SEC:-0.1}
    duration=${DURATION:-60s} ramp=${RAMP:-25s}
else
    connections=${CONNECTIONS:-400} rooms=${ROOMS:-40} rate=${STROKES_PER_SEC:-2}
    duration=${DURATION:-150s} ramp=${RAMP:-5s}
fi

# shellcheck source=lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"
declare -A pid_of=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Only what this script started, newest first.
    stop_pids 50
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r p_primary p_replica p_proxy p_a p_b < <(python3 -c '
import socket
s = [socket.socket() for _ in range(5)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
now_ms() { date +%s%3N; }
cli() { redis-cli -p "$1" "${@:2}"; }

start_redis() { # name port [args]
    # DEBUG (SLEEP, for the pause) is refused by Redis 7 unless enabled; from loopback only.
    redis-server --bind 127.0.0.1 --port "$2" --save '' --appendonly no --dir "$out" \
        --enable-debug-command local \
        --dbfilename "$1.rdb" --logfile "$out/redis-$1.log" "${@:3}" &
    pids+=($!)
    pid_of[$1]=$!
    for _ in $(seq 100); do cli "$2" ping >/dev/null 2>&1 && return; sleep 0.05; done
    echo "redis $1 did not start" >&2
    exit 3
}
start_redis primary "$p_primary"
start_redis replica "$p_replica" --replicaof 127.0.0.1 "$p_primary"
echo "$p_primary" >"$out/target"
python3 scripts/tcp-switch.py "$p_proxy" "$out/target" &
pids+=($!)
pid_of[proxy]=$!

ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/readyz") == 200 ]]; }
declare -A port=([a]=$p_a [b]=$p_b)
start_instance() {
    env DRAWBRIDGE_LISTEN=127.0.0.1:${port[$1]} \
        DRAWBRIDGE_REDIS_URL=redis://127.0.0.1:$p_proxy \
        DRAWBRIDGE_JWT_SECRET=$secret DRAWBRIDGE_INSTANCE_ID=$1 \
        DRAWBRIDGE_WS_UPGRADES_PER_MINUTE=0 DRAWBRIDGE_MAX_CONNECTIONS_PER_IP=0 \
        DRAWBRIDGE_ROOM_RATE_LIMIT=0 DRAWBRIDGE_MAX_ROOMS_PER_IP=0 \
        DRAWBRIDGE_LOG=${DRAWBRIDGE_LOG:-warn} DRAWBRIDGE_DRAIN_SECS=1 \
        "$server_bin" >>"$out/drawbridge-$1.log" 2>&1 &
    pids+=($!)
    pid_of[$1]=$!
    for _ in $(seq 150); do ready "${port[$1]}" && return; sleep 0.1; done
    echo "drawbridge $1 did not become ready" >&2
    exit 3
}
start_instance a
start_instance b

joined() { tail -n 1 "$out/joined.log" 2>/dev/null | awk '{print $2}'; }
# Waits until every connection is joined again; prints the ms it took from $1.
until_all_joined() {
    local since=$1
    for _ in $(seq 1200); do
        [[ $(joined) == "$connections" ]] && { echo $(($(now_ms) - since)); return; }
        sleep 0.05
    done
    echo "never"
}
metric() { curl -s --max-time 1 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
# Waits until `metric` on both instances is above what it was; prints the ms it took from $1.
until_metric_moves() { # since metric before_a before_b
    for _ in $(seq 1200); do
        local a b
        a=$(metric "$p_a" "$2") b=$(metric "$p_b" "$2")
        if [[ -n $a && -n $b ]] && awk -v a="$a" -v b="$b" -v x="$3" -v y="$4" 'BEGIN{exit !(a > x && b > y)}'; then
            echo $(($(now_ms) - $1)); return
        fi
        sleep 0.05
    done
    echo "never"
}

# Waits until `metric`, summed over both instances, is above $3 (clients may all sit on one
# instance after a kill); prints the ms it took from $1.
msum() { echo $(( $(metric "$p_a" "$1" | cut -d. -f1 || echo 0) + $(metric "$p_b" "$1" | cut -d. -f1 || echo 0) )); }
until_sum_moves() { # since metric before
    for _ in $(seq 1200); do
        (( $(msum "$2") > $3 )) && { echo $(($(now_ms) - $1)); return; }
        sleep 0.05
    done
    echo "never"
}

echo "stack: primary :$p_primary replica :$p_replica proxy :$p_proxy a :$p_a b :$p_b; output in $out" >&2
LOADTEST_JOINED_LOG=$out/joined.log LOADTEST_JWT_SECRET=$secret "$loadtest_bin" --mode traffic \
    --url "ws://127.0.0.1:$p_a" --url "ws://127.0.0.1:$p_b" -c "$connections" -r "$rooms" \
    --strokes-per-sec "$rate" --cursor-per-sec 0 --ramp-up "$ramp" --warmup 2s \
    --duration "$duration" --drain 60s --threads 2 -q --out "$out/result.json" \
    >"$out/loadtest.txt" 2>&1 &
loadtest=$!
pids+=($loadtest)

start=$(now_ms)
got=$(until_all_joined "$start")
[[ $got != never ]] || { echo "the load never joined" >&2; exit 3; }
echo "all $connections connections joined after ${got} ms" >&2
sleep 3

row() { echo "| $1 | $2 | $3 |" | tee -a "$out/results.md"; }
echo "| fault | what was done | recovery |" | tee -a "$out/results.md"
echo "|---|---|---|" | tee -a "$out/results.md"

kill_a() {
    local on_a t
    on_a=$(metric "$p_a" drawbridge_connections)
    t=$(now_ms)
    kill -KILL "${pid_of[a]}"
    wait "${pid_of[a]}" 2>/dev/null || true
    # Every client of a reconnects to b (the generator moves to the next URL when a connect
    # fails, as a client behind a load balancer would) and re-joins with since/epoch.
    local all
    all=$(until_all_joined "$t")
    row "instance SIGKILL" "SIGKILL drawbridge a with ${on_a:-?} of $connections sockets" \
        "all $connections joined again (REPLAY/INITIAL_STATE received) $all ms after the kill; $(back_at "$t")"
}
# How long after $1 the dropped clients were back: half, 90 %, 99 % of them.
back_at() {
    python3 - "$out/joined.log" "$1" "$connections" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
t0, n = int(sys.argv[2]), int(sys.argv[3])
after = [(t, j) for t, j in rows if t >= t0]
# From the kill to the moment all are back: the lowest count in between, then the climb.
end = next((i for i, (_, j) in enumerate(after) if j == n and i > 0 and after[i - 1][1] < n), len(after) - 1)
window = after[: end + 1]
low_at = min(range(len(window)), key=lambda i: window[i][1]) if window else 0
low = window[low_at][1] if window else n
lost = n - low
def at(share):
    want = low + share * lost
    return next((t - t0 for t, j in window[low_at:] if j >= want), None)
print(f"{lost} dropped; half back at {at(0.5)} ms, 90 % at {at(0.9)} ms, 99 % at {at(0.99)} ms")
PY
}

if [[ $mode == storm ]]; then
    kill_a
else
    kill_a
    sleep 2
    start_instance a
    sleep 5

    before_a=$(metric "$p_a" drawbridge_feed_resubscribed_total) before_b=$(metric "$p_b" drawbridge_feed_resubscribed_total)
    t=$(now_ms)
    killed=$(cli "$p_primary" CLIENT KILL TYPE pubsub)
    row "pub/sub killed" "CLIENT KILL TYPE pubsub ($killed subscribers)" \
        "both instances resubscribed and refilled from the logs $(until_metric_moves "$t" drawbridge_feed_resubscribed_total "$before_a" "$before_b") ms after"
    sleep 5

    t=$(now_ms)
    cli "$p_primary" DEBUG SLEEP 3 >"$out/pause.txt" &
    sleeper=$!
    # Ops applied so far, read once the pause holds: the next one applied is the recovery.
    sleep 0.3
    before=$(msum drawbridge_ops_applied_total)
    back=$(until_sum_moves "$t" drawbridge_ops_applied_total "$before")
    wait "$sleeper"
    [[ $(cat "$out/pause.txt") == OK ]] || { echo "DEBUG SLEEP refused: $(cat "$out/pause.txt")" >&2; exit 3; }
    row "Redis paused" "DEBUG SLEEP 3 on the primary (ops wait, or are refused UNAVAILABLE and resent)" \
        "ops applied again $back ms after the pause began (3,000 of it the pause); sockets kept: $(joined) of $connections joined"
    sleep 5

    # Sentinel's failover, by hand: the replica becomes the primary, the address moves (the
    # proxy cuts what it carried), the old primary becomes its replica.
    before_a=$(metric "$p_a" drawbridge_feed_resubscribed_total) before_b=$(metric "$p_b" drawbridge_feed_resubscribed_total)
    offset=$(cli "$p_primary" INFO replication | awk -F: '/^master_repl_offset/ {print $2+0}')
    t=$(now_ms)
    cli "$p_replica" REPLICAOF NO ONE >/dev/null
    echo "$p_replica" >"$out/target"
    kill -USR1 "${pid_of[proxy]}"
    cli "$p_primary" REPLICAOF 127.0.0.1 "$p_replica" >/dev/null
    ops_before=$(msum drawbridge_ops_applied_total)
    feed=$(until_metric_moves "$t" drawbridge_feed_resubscribed_total "$before_a" "$before_b")
    ops=$(until_sum_moves "$t" drawbridge_ops_applied_total "$ops_before")
    row "replica promoted" "REPLICAOF NO ONE on the replica (primary offset $offset), proxy switched (connections cut), old primary made its replica" \
        "ops applied on the new primary ${ops} ms after; both feeds resubscribed and refilled ${feed} ms after"
    sleep 5
fi

echo "waiting for the load generator to finish (its drain checks every ACK)..." >&2
status=0
wait "$loadtest" || status=$?
python3 - "$out/result.json" "$status" <<'EOF' | tee -a "$out/results.md"
import json, sys
r = json.load(open(sys.argv[1]))
s, a, c = r["sequencing"], r["acks"], r["connections"]
print(f"\nload: {r['scenario'].get('connections')} connections, acked {a['acked']}, unacked at end {a['unacked_at_end']}, "
      f"resent {a['resent']} (answered duplicate {a['duplicates']}), reconnects {c['reconnects']}")
print(f"checks: lost acked ops {s['lost_acked']}, gaps {s['gaps']}, duplicate events {s['duplicates']}, "
      f"out of order {s['out_of_order']}; loadtest exit {sys.argv[2]}, failures {r['failures']}")
EOF
exit "$status"
