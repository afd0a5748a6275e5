#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests talk to when it is missing
# (redis-server; for the browser tests chromium and nginx; needs root and apt), then runs the
# Rust suites (unit, engine in each pubsub_mode on one Redis and on a Redis Cluster, gateway,
# Redis Cluster failover and slot moves, Redis faults and TLS, process,
# loadtest smoke), the deployment checks (Dockerfile, Kubernetes, compose, the image) and the
# browser end-to-end tests. Every server is private, on free loopback ports, and stopped
# afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-packages redis-server=redis-server redis-cli=redis-tools

cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
# The Redis engine suite again in the per-room pub/sub modes (tests/pubsub_modes.rs runs the
# gateway cases in all three).
for mode in room sharded; do
    # --workspace: the same features as above, so nothing is compiled twice.
    DRAWBRIDGE_PUBSUB_MODE=$mode cargo test --workspace --test engine_suite redis
done
# And on a 3-master Redis Cluster (redis_mode = cluster), in each pub/sub mode: every case
# starts its own cluster on free loopback ports. tests/redis_cluster.rs (run above) covers two
# instances per mode, a failover under writes and a slot moved under a room.
for mode in pattern room sharded; do
    DRAWBRIDGE_REDIS_MODE=cluster DRAWBRIDGE_PUBSUB_MODE=$mode \
        cargo test --workspace --test engine_suite redis
done

bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/drawbridge"

# What operators deploy: Dockerfile lint, Kubernetes schemas and cross-checks, the compose kit
# (linters from PyPI, in a venv under the target directory).
scripts/check-deploy.sh "$bin"

# The image, built with buildah and health-checked with the server running inside it (as root;
# installs buildah when missing; skipped with a notice where it cannot run).
scripts/container-build.sh "$bin"

# Browser end-to-end: Debian's Chromium against two instances behind nginx, with Redis.
# e2e/run.sh installs chromium and nginx when missing (as root) and the node packages.
DRAWBRIDGE_BIN="$bin" bash e2e/run.sh
