#!/usr/bin/env bash
# Runs a loadtest preset against a private stack on this machine: one redis-server and two
# drawbridge instances (a, b) on free loopback ports, then stops everything it started.
#
#   loadtest/run-local.sh <fanout|overload|presence|idle|latejoin|board> [extra loadtest flags]
#
# Environment:
#   PROFILE=release|debug   which build to use (default release; debug skips the slow build
#                           when only checking the script)
#   SKIP_BUILD=1            use the binaries already built
#   SERVER_BIN=path         run this drawbridge binary instead of target/<profile>/drawbridge
#                           (e.g. a build of another commit; implies no build of the server)
#   LOADTEST_BIN=path       run this loadtest binary instead of target/<profile>/loadtest
#                           (implies no build of the generator; with SERVER_BIN, nothing is
#                           built: compare two servers under one and the same generator)
#   OUT_DIR=dir             where result.json, chart.svg, rss.txt and the logs go
#                           (default target/loadtest/<preset>-<timestamp>)
#   REDIS_SERVER=path       redis-server binary (default: the one on PATH)
#   REDIS_PUBSUB_LIMIT=...  Redis's output-buffer limit for subscribers, e.g. "4mb 1mb 5"
#                           (hard, soft, soft seconds; default Redis's own 32mb 8mb 60): a low
#                           one makes Redis cut off a lagging instance, which must then fill
#                           the hole from the room logs
#   GUEST_TOKENS=1          do not give loadtest the secret: it fetches guest tokens over HTTP
#   PAUSE_A=<after>:<for>   fault: freeze instance a (SIGSTOP) <after> seconds into the run for
#                           <for> seconds, so Redis cuts off its subscriber at the limit above
#   DRAWBRIDGE_*            passed through to both instances (e.g. DRAWBRIDGE_SEND_QUEUE;
#                           DRAWBRIDGE_DRAIN_SECS defaults to 1 here so shutdown is quick)
#
# Exit status: loadtest's own (0 pass, 1 loss or nothing measured, 2 could not run), or 3 when
# the stack did not come up.
set -euo pipefail

usage() {
    # The header comment, up to the first line that is not one.
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
}
[[ $# -ge 1 ]] || usage
case "$1" in
    fanout | overload | presence | idle | latejoin | board) preset=$1 ;;
    -h | --help) usage ;;
    *) echo "unknown preset: $1" >&2; usage ;;
esac
shift

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
profile=${PROFILE:-release}
out_dir=${OUT_DIR:-$root/target/loadtest/$preset-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out_dir"

bin=$root/target/$profile
server_bin=${SERVER_BIN:-$bin/drawbridge}
loadtest_bin=${LOADTEST_BIN:-$bin/loadtest}
if [[ -z ${SKIP_BUILD:-} ]]; then
    packages=()
    [[ -z ${LOADTEST_BIN:-} ]] && packages+=(-p loadtest)
    [[ -z ${SERVER_BIN:-} ]] && packages+=(-p drawbridge)
    if [[ ${#packages[@]} -eq 0 ]]; then
        :
    elif [[ $profile == release ]]; then
        cargo build --release "${packages[@]}"
    else
        cargo build "${packages[@]}"
    fi
fi
for b in "$server_bin" "$loadtest_bin"; do
    [[ -x $b ]] || { echo "missing $b (build it or unset SKIP_BUILD)" >&2; exit 3; }
done
redis_server=${REDIS_SERVER:-$(command -v redis-server || true)}
[[ -n $redis_server ]] || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 3; }

# Sockets: 10,000 client connections plus as many server-side ones in one process tree.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# shellcheck source=../scripts/lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/procs.sh"
sampler=
pauser=
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
    if [[ -n $pauser ]]; then
        kill "$pauser" 2>/dev/null || true
        kill -CONT "${pid_of[a]}" 2>/dev/null || true
    fi
    # Only what this script started, newest first, each gone before the next: the instances
    # drain (their sockets, then their Redis work) before their Redis stops.
    stop_pids 150
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

redis_args=()
[[ -n ${REDIS_PUBSUB_LIMIT:-} ]] && redis_args+=(--client-output-buffer-limit "pubsub $REDIS_PUBSUB_LIMIT")
"$redis_server" --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --protected-mode yes --logfile "$out_dir/redis.log" "${redis_args[@]}" &
pids+=($!)
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null 2>&1 || { echo "redis did not start" >&2; exit 3; }

declare -A port=([a]=$port_a [b]=$port_b) pid_of=()
# The generator makes all its rooms from one address, far past the per-IP room limit. A server
# of an earlier commit (SERVER_BIN) does not know that setting and would refuse it, so it is
# turned off only where check-config lists it.
limits=()
# (v1 has no check-config and would start serving instead: the timeout ends that.)
known=$(timeout 5 "$server_bin" check-config 2>/dev/null || true)
if grep -q '^max_rooms_per_ip' <<<"$known"; then
    limits+=(DRAWBRIDGE_MAX_ROOMS_PER_IP="${DRAWBRIDGE_MAX_ROOMS_PER_IP:-0}")
fi
# Long runs write more than a room's default quotas; they measure fan-out, not quotas.
if grep -q '^max_room_bytes' <<<"$known"; then
    limits+=(DRAWBRIDGE_MAX_ROOM_ELEMENTS="${DRAWBRIDGE_MAX_ROOM_ELEMENTS:-10000000}")
    limits+=(DRAWBRIDGE_MAX_ROOM_BYTES="${DRAWBRIDGE_MAX_ROOM_BYTES:-68719476736}")
    limits+=(DRAWBRIDGE_MAX_USER_BYTES="${DRAWBRIDGE_MAX_USER_BYTES:-68719476736}")
fi
for inst in a b; do
    env "${limits[@]}" \
    DRAWBRIDGE_LISTEN=127.0.0.1:${port[$inst]} \
    DRAWBRIDGE_REDIS_URL=redis://127.0.0.1:$redis_port \
    DRAWBRIDGE_JWT_SECRET=$secret \
    DRAWBRIDGE_INSTANCE_ID=$inst \
    DRAWBRIDGE_WS_UPGRADES_PER_MINUTE=0 \
    DRAWBRIDGE_UPGRADES_PER_SEC=0 \
    DRAWBRIDGE_MAX_CONNECTIONS_PER_IP=0 \
    DRAWBRIDGE_ROOM_RATE_LIMIT=0 \
    DRAWBRIDGE_LOG=${DRAWBRIDGE_LOG:-warn} \
    DRAWBRIDGE_DRAIN_SECS=${DRAWBRIDGE_DRAIN_SECS:-1} \
        "$server_bin" >"$out_dir/drawbridge-$inst.log" 2>&1 &
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
# CPU seconds (user + system) a process has used; the command name may hold spaces, so count
# fields from the end of /proc/<pid>/stat's closing parenthesis.
clk_tck=$(getconf CLK_TCK)
cpu_s() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v t="$clk_tck" '{ printf "%.2f", ($12 + $13) / t }' || echo 0; }
declare -A rss_before=() cpu_before=()
pid_of[redis]=${pids[0]}
for inst in a b; do rss_before[$inst]=$(rss_kib "${pid_of[$inst]}" VmRSS); done
for p in a b redis; do cpu_before[$p]=$(cpu_s "${pid_of[$p]}"); done

# Peak RSS during the run, sampled once per second (VmHWM would also count start-up spikes).
: >"$out_dir/rss-samples.txt"
(
    while sleep 1; do
        echo "$(date +%s) a $(rss_kib "${pid_of[a]}" VmRSS) b $(rss_kib "${pid_of[b]}" VmRSS)"
    done >>"$out_dir/rss-samples.txt"
) &
sampler=$!
if [[ -n ${PAUSE_A:-} ]]; then
    IFS=: read -r pause_after pause_for <<<"$PAUSE_A"
    (
        sleep "$pause_after"
        echo "$(date +%s) pausing drawbridge-a for ${pause_for}s" >>"$out_dir/faults.txt"
        kill -STOP "${pid_of[a]}"
        sleep "$pause_for"
        kill -CONT "${pid_of[a]}"
        echo "$(date +%s) resumed drawbridge-a" >>"$out_dir/faults.txt"
    ) &
    pauser=$!
fi

echo "stack: redis 127.0.0.1:$redis_port, a 127.0.0.1:$port_a (pid ${pid_of[a]}), b 127.0.0.1:$port_b (pid ${pid_of[b]}); output in $out_dir" >&2
secret_env=(LOADTEST_JWT_SECRET="$secret")
[[ -n ${GUEST_TOKENS:-} ]] && secret_env=()
set +e
TIMEFORMAT='loadtest process: %R s wall, %U s user, %S s system CPU'
time env -u LOADTEST_JWT_SECRET "${secret_env[@]}" "$loadtest_bin" --preset "$preset" \
    --url "ws://127.0.0.1:$port_a" --url "ws://127.0.0.1:$port_b" \
    --out "$out_dir/result.json" --chart "$out_dir/chart.svg" "$@"
status=$?
set -e
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=

# What the servers saw, for explaining a figure: Redis command costs and each instance's metrics.
{
    redis-cli -p "$redis_port" INFO commandstats
    redis-cli -p "$redis_port" INFO stats
    redis-cli -p "$redis_port" INFO memory | grep -E '^used_memory(_human|_peak_human)?:'
    echo "# SLOWLOG (slowest recent commands, µs)"
    redis-cli -p "$redis_port" SLOWLOG GET 10
} >"$out_dir/redis-info.txt" 2>&1 || true
for inst in a b; do
    curl -s --max-time 5 "http://127.0.0.1:${port[$inst]}/metrics" >"$out_dir/metrics-$inst.txt" 2>&1 || true
done

{
    printf '%-10s %12s %12s %12s %12s\n' instance "rss before" "rss peak" "rss after" "hwm"
    for inst in a b; do
        col=$([[ $inst == a ]] && echo 3 || echo 5)
        peak=$(awk -v c="$col" 'BEGIN { m = 0 } $c > m { m = $c } END { print m }' "$out_dir/rss-samples.txt")
        printf '%-10s %9s KiB %9s KiB %9s KiB %9s KiB\n' "drawbridge-$inst" "${rss_before[$inst]}" \
            "$peak" "$(rss_kib "${pid_of[$inst]}" VmRSS)" "$(rss_kib "${pid_of[$inst]}" VmHWM)"
    done
    for p in a b redis; do
        name=$([[ $p == redis ]] && echo redis || echo "drawbridge-$p")
        now=$(cpu_s "${pid_of[$p]}")
        printf '%-12s CPU during the run: %s s\n' "$name" "$(awk -v a="$now" -v b="${cpu_before[$p]}" 'BEGIN { printf "%.2f", a - b }')"
    done
} | tee "$out_dir/rss.txt"
for inst in a b; do
    kill -0 "${pid_of[$inst]}" 2>/dev/null || echo "WARNING: drawbridge-$inst exited during the run; see $out_dir/drawbridge-$inst.log" >&2
done
echo "output in $out_dir" >&2
exit "$status"
