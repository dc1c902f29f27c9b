#!/usr/bin/env bash
# One command from a fresh clone: build, fetch the default model and texts (cached after the first run), then
# run the main job on SmolLM2-135M: the dense model's generation and reference perplexity, then VPTQ at ~2 bits
# (v6-k4096, about 3 minutes on 2 cores; kept in runs/ and resumed if interrupted) and the same on the result.
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
OUT=runs/smollm2-v6-k4096
if [ ! -f "$OUT/config.json" ]; then
  $VPTQ quantize --model "$MODEL" --out "$OUT" --preset v6-k4096
fi
$VPTQ generate --model "$OUT" --prompt "The three most important inventions of the 20th century are" \
  --temperature 0 --max-tokens 48
$VPTQ ppl --model "$OUT" --text pride --ctx 512 --max-windows 32
$VPTQ bench --model "$OUT" --prompt-len 128 --gen-len 64
