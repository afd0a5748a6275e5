#!/usr/bin/env bash
# A long fuzzing run of the stable-toolchain harnesses in tests/fuzz.rs (frame parser, element
# and patch validation, SVG import): no panic, allocation bounded by the input. CI runs them with
# 2,000 cases each; this runs FUZZ_CASES (default 200,000; SVG documents get a quarter), in
# release, so it finishes in minutes. A failure prints the minimal input proptest shrank it to.
#   FUZZ_CASES=1000000 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZ_CASES="${FUZZ_CASES:-200000}" cargo test --release --test fuzz -- --nocapture
