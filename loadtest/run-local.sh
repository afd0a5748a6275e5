#!/usr/bin/env bash
# Runs a loadtest preset against a private stack on this machine: one redis-server and two
# drawbridge instances (a, b) on free loopback ports, then stops everything it started.
#
#   loadtest/run-local.sh <fanout|overload|presence|idle|latejoin> [extra loadtest flags]
#
# Environment:
#   PROFILE=release|debug   which build to use (default release; debug skips the slow build
#                           when only checking the script)
#   SKIP_BUILD=1            use the binaries already built
#   OUT_DIR=dir             where result.json, chart.svg, rss.txt and the logs go
#                           (default target/loadtest/<preset>-<timestamp>)
#   REDIS_SERVER=path       redis-server binary (default: the one on PATH)
#   GUEST_TOKENS=1          do not give loadtest the secret: it fetches guest tokens over HTTP
#   DRAWBRIDGE_*            passed through to both instances (e.g. DRAWBRIDGE_SEND_QUEUE)
#
# Exit status: loadtest's own (0 pass, 1 loss or nothing measured, 2 could not run), or 3 when
# the stack did not come up.
set -euo pipefail

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}
[[ $# -ge 1 ]] || usage
case "$1" in
    fanout | overload | presence | idle | latejoin) preset=$1 ;;
    -h | --help) usage ;;
    *) echo "unknown preset: $1" >&2; usage ;;
esac
shift

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
profile=${PROFILE:-release}
out_dir=${OUT_DIR:-$root/target/loadtest/$preset-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out_dir"

if [[ -z ${SKIP_BUILD:-} ]]; then
    if [[ $profile == release ]]; then
        cargo build --release -p drawbridge -p loadtest
    else
        cargo build -p drawbridge -p loadtest
    fi
fi
bin=$root/target/$profile
for b in drawbridge loadtest; do
    [[ -x $bin/$b ]] || { echo "missing $bin/$b (build it or unset SKIP_BUILD)" >&2; exit 3; }
done
redis_server=${REDIS_SERVER:-$(command -v redis-server || true)}
[[ -n $redis_server ]] || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 3; }

# Sockets: 10,000 client connections plus as many server-side ones in one process tree.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

pids=()
sampler=
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
    # Only what this script started, newest first: the instances before their Redis.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three distinct free loopback ports, held open together so they cannot repeat.
read -r redis_port port_a port_b < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

"$redis_server" --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --protected-mode yes --logfile "$out_dir/redis.log" &
pids+=($!)
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null 2>&1 || { echo "redis did not start" >&2; exit 3; }

declare -A port=([a]=$port_a [b]=$port_b) pid_of=()
for inst in a b; do
    DRAWBRIDGE_LISTEN=127.0.0.1:${port[$inst]} \
    DRAWBRIDGE_REDIS_URL=redis://127.0.0.1:$redis_port \
    DRAWBRIDGE_JWT_SECRET=$secret \
    DRAWBRIDGE_INSTANCE_ID=$inst \
    DRAWBRIDGE_WS_UPGRADES_PER_MINUTE=0 \
    DRAWBRIDGE_LOG=${DRAWBRIDGE_LOG:-warn} \
        "$bin/drawbridge" >"$out_dir/drawbridge-$inst.log" 2>&1 &
    pids+=($!)
    pid_of[$inst]=$!
done

ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/readyz") == 200 ]]; }
for inst in a b; do
    for _ in $(seq 150); do
        ready "${port[$inst]}" && break
        kill -0 "${pid_of[$inst]}" 2>/dev/null || break
        sleep 0.2
    done
    if ! ready "${port[$inst]}"; then
        echo "drawbridge $inst did not become ready; its log:" >&2
        tail -n 30 "$out_dir/drawbridge-$inst.log" >&2
        exit 3
    fi
done

rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -A rss_before=()
for inst in a b; do rss_before[$inst]=$(rss_kib "${pid_of[$inst]}" VmRSS); done

# Peak RSS during the run, sampled once per second (VmHWM would also count start-up spikes).
: >"$out_dir/rss-samples.txt"
(
    while sleep 1; do
        echo "$(date +%s) a $(rss_kib "${pid_of[a]}" VmRSS) b $(rss_kib "${pid_of[b]}" VmRSS)"
    done >>"$out_dir/rss-samples.txt"
) &
sampler=$!

echo "stack: redis 127.0.0.1:$redis_port, a 127.0.0.1:$port_a (pid ${pid_of[a]}), b 127.0.0.1:$port_b (pid ${pid_of[b]}); output in $out_dir" >&2
secret_env=(LOADTEST_JWT_SECRET="$secret")
[[ -n ${GUEST_TOKENS:-} ]] && secret_env=()
set +e
env -u LOADTEST_JWT_SECRET "${secret_env[@]}" "$bin/loadtest" --preset "$preset" \
    --url "ws://127.0.0.1:$port_a" --url "ws://127.0.0.1:$port_b" \
    --out "$out_dir/result.json" --chart "$out_dir/chart.svg" "$@"
status=$?
set -e
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=

{
    printf '%-10s %12s %12s %12s %12s\n' instance "rss before" "rss peak" "rss after" "hwm"
    for inst in a b; do
        col=$([[ $inst == a ]] && echo 3 || echo 5)
        peak=$(awk -v c="$col" 'BEGIN { m = 0 } $c > m { m = $c } END { print m }' "$out_dir/rss-samples.txt")
        printf '%-10s %9s KiB %9s KiB %9s KiB %9s KiB\n' "drawbridge-$inst" "${rss_before[$inst]}" \
            "$peak" "$(rss_kib "${pid_of[$inst]}" VmRSS)" "$(rss_kib "${pid_of[$inst]}" VmHWM)"
    done
} | tee "$out_dir/rss.txt"
for inst in a b; do
    kill -0 "${pid_of[$inst]}" 2>/dev/null || echo "WARNING: drawbridge-$inst exited during the run; see $out_dir/drawbridge-$inst.log" >&2
done
echo "output in $out_dir" >&2
exit "$status"
