#!/usr/bin/env bash
# One command from a fresh clone: build, fetch the default model and texts (cached after the first run), then
# run the main job on SmolLM2-135M: generation and the reference perplexity.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin vptq
VPTQ=./target/release/vptq
CACHE="${VPTQ_CACHE:-$HOME/.cache/vptq}"
$VPTQ fetch
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
$VPTQ inspect "$MODEL"
$VPTQ generate --model "$MODEL" --prompt "The three most important inventions of the 20th century are" \
  --temperature 0 --max-tokens 48
$VPTQ ppl --model "$MODEL" --text "$CACHE/text/austen/prideprejudice.txt" --ctx 512 --max-windows 32
