#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test in release mode (the real-model tests run the
# SmolLM2 forward pass, which is too slow unoptimized). Assets are fetched first (a no-op once cached) and
# required, so a missing asset fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --release --bin vptq
./target/release/vptq fetch
VPTQ_REQUIRE_ASSETS=1 cargo test --workspace --release
