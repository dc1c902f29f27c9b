#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test in release mode (the real-model tests run the
# SmolLM2 forward pass, which is too slow unoptimized). Assets are fetched first (a no-op once cached) and
# required, so a missing asset fails the run instead of skipping tests. Last, the aarch64 (NEON) kernels are
# cross-built and tested under qemu (scripts/test_aarch64.sh; as root only, skipped with a message when its
# chroot cannot be set up).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --release --bin vptq
./target/release/vptq fetch
VPTQ_REQUIRE_ASSETS=1 cargo test --workspace --release
status=0
scripts/test_aarch64.sh || status=$?
case $status in
    0) ;;
    77) echo "test.sh: the aarch64 kernel tests did not run (see above)" ;;
    *) exit "$status" ;;
esac
