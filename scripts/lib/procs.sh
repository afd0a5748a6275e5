# Shared by the benchmark, load and chaos scripts (sourced, not run): the binaries they need, and
# stopping exactly what they started, newest first (instances drain before their Redis stops),
# on any exit. A script with more to undo sets its own EXIT trap and calls stop_pids from it.

# require_bins DIR NAME...: each NAME must be an executable in DIR.
require_bins() {
    local dir=$1
    shift
    for b in "$@"; do
        [[ -x $dir/$b ]] || { echo "missing $dir/$b (cargo build --release -p drawbridge -p loadtest)" >&2; exit 3; }
    done
}

pids=()
# stop_pids [TENTHS]: each of `pids`, newest first, asked to stop (TERM), given TENTHS tenths of a
# second (default 100), then killed, and gone before the next is asked.
stop_pids() {
    local tenths=${1:-100}
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        for _ in $(seq "$tenths"); do
            kill -0 "${pids[i]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    pids=()
}
stop_all() { stop_pids 100; }
trap stop_all EXIT
trap 'exit 130' INT TERM
