#!/usr/bin/env bash
# Builds the container image with buildah (Debian's package: no daemon, chroot isolation) and
# checks what an operator relies on: it runs as the numeric non-root user, `drawbridge
# healthcheck` (the image's HEALTHCHECK) passes against the server running inside it, the OCI
# labels are set.
#
#   scripts/container-build.sh [BINARY]
#
# Where the base images can be pulled, the whole Dockerfile is built (`--target runtime`:
# Rust image, cargo-chef, distroless). Where they cannot (no registry but the package ones, as
# on this project's machines), the runtime stage is built from BINARY (default: the debug
# build) on a base assembled here from the host's glibc: the same `prebuilt` stage, user,
# labels and HEALTHCHECK, a different base. It says which one it built.
# Needs root (buildah's storage and chroot); without root or buildah it says so and exits 0,
# unless DRAWBRIDGE_REQUIRE_IMAGE=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

skip() {
    echo "container-build: SKIPPED: $*" >&2
    [[ "${DRAWBRIDGE_REQUIRE_IMAGE:-0}" == 1 ]] && exit 1
    exit 0
}

[[ $(id -u) -eq 0 ]] || skip "buildah needs root here"
scripts/ensure-packages buildah=buildah || skip "buildah is not installable"

bin="${1:-${CARGO_TARGET_DIR:-$PWD/target}/debug/drawbridge}"
image=localhost/drawbridge:ci
base=localhost/drawbridge-base:host-glibc
work="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-image.XXXXXX")"
containers=()
server_pid=""
# The processes started under `pid` (buildah run -> chroot exec -> drawbridge), deepest last.
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1"); do echo "$child"; descendants "$child"; done
}
cleanup() {
    if [[ -n "$server_pid" ]]; then
        # SIGTERM to the server itself (it drains and exits 0); buildah run then returns.
        kill $(descendants "$server_pid") "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
    buildah rmi "$image" "$base" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

bud() { buildah bud --isolation=chroot --format docker "$@"; }

if timeout 20 buildah pull -q gcr.io/distroless/cc-debian12:nonroot >/dev/null 2>&1 \
    && timeout 120 buildah pull -q docker.io/library/rust:1.95-bookworm >/dev/null 2>&1; then
    echo "container-build: full build (Rust image, cargo-chef, distroless runtime)"
    bud --target runtime -t "$image" .
else
    echo "container-build: base images unreachable; building the runtime stage from $bin on a" \
        "base made of the host's glibc"
    [[ -x "$bin" ]] || { echo "container-build: no binary at $bin (cargo build first)" >&2; exit 1; }
    # A distroless-like base: the binary's shared libraries and a passwd entry for 65532.
    c=$(buildah from scratch); containers+=("$c")
    root=$(buildah mount "$c")
    ldd "$bin" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | while read -r lib; do
        cp --parents -L "$lib" "$root"
    done
    mkdir -p "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >"$root/etc/passwd"
    echo "nonroot:x:65532:" >"$root/etc/group"
    buildah umount "$c" >/dev/null
    buildah commit -q "$c" "$base" >/dev/null
    # The context holds only what the prebuilt stage copies.
    mkdir -p "$work/ctx/dist" "$work/ctx/config"
    cp "$bin" "$work/ctx/dist/drawbridge"
    cp config/default.toml "$work/ctx/config/"
    cp .dockerignore "$work/ctx/"
    bud --target prebuilt --build-arg RUNTIME_BASE="$base" -f Dockerfile -t "$image" "$work/ctx"
fi

fail() { echo "container-build: FAILED: $*" >&2; exit 1; }
inspect() { buildah inspect --type image --format "$1" "$image"; }
[[ "$(inspect '{{.Docker.Config.User}}')" == "65532:65532" ]] || fail "user is not numeric 65532"
inspect '{{.Docker.Config.Healthcheck.Test}}' | grep -q 'drawbridge healthcheck' \
    || fail "no HEALTHCHECK via drawbridge healthcheck"
for label in title version revision source licenses; do
    inspect "{{index .Docker.Config.Labels \"org.opencontainers.image.$label\"}}" | grep -q . \
        || fail "no org.opencontainers.image.$label label"
done

c=$(buildah from -q "$image"); containers+=("$c")
run() { buildah run --isolation=chroot --network=host "$@"; }
run "$c" -- /usr/local/bin/drawbridge --version
run "$c" -- /usr/local/bin/drawbridge check-config >/dev/null || fail "check-config in the image"
# A free port (the host network is shared: something else may hold the default 8080).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[[ "$(run --env "DRAWBRIDGE_LISTEN=127.0.0.1:$port" "$c" -- /usr/local/bin/drawbridge healthcheck \
    2>/dev/null; echo $?)" != 0 ]] || fail "healthcheck passed with no server"
run --env "DRAWBRIDGE_LISTEN=127.0.0.1:$port" "$c" -- /usr/local/bin/drawbridge >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    run --env "DRAWBRIDGE_LISTEN=127.0.0.1:$port" "$c" -- /usr/local/bin/drawbridge healthcheck \
        2>/dev/null && break
    sleep 0.2
done
run --env "DRAWBRIDGE_LISTEN=127.0.0.1:$port" "$c" -- /usr/local/bin/drawbridge healthcheck \
    || { cat "$work/serve.log" >&2; fail "healthcheck against the server in the image"; }
# The server runs as 65532, not root.
uids=$(for p in $(descendants "$server_pid"); do ps -o uid=,comm= -p "$p"; done)
grep -Eq '^ *65532 +drawbridge' <<<"$uids" || fail "the server does not run as 65532: $uids"
echo "container-build: OK ($image: user 65532, healthcheck, labels)"
