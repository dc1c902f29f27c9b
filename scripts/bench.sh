#!/usr/bin/env bash
# Reproduces the numbers in BENCHMARKS.md (run on a quiet machine; prints JSON lines).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin vptq
VPTQ=./target/release/vptq
CACHE="${VPTQ_CACHE:-$HOME/.cache/vptq}"
SMOL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
$VPTQ fetch -q
for dtype in f32 f16; do
  for t in 1 2; do
    echo "== bench SmolLM2 dtype=$dtype threads=$t"
    $VPTQ bench -m "$SMOL" --dtype "$dtype" --threads "$t" --prompt-len 128 --gen-len 64 --repeats 3 --json -q
  done
done
echo "== ppl SmolLM2 f32, Pride and Prejudice, 32 windows, threads 2"
/usr/bin/time -f "wall %e s, max RSS %M KiB" \
  $VPTQ ppl -m "$SMOL" --text "$CACHE/text/austen/prideprejudice.txt" --ctx 512 --max-windows 32 --json -q
if [ -f "$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" ]; then
  QWEN="$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
  echo "== bench Qwen2.5-Coder-1.5B dtype=f16 threads=2"
  $VPTQ bench -m "$QWEN" --dtype f16 --threads 2 --prompt-len 128 --gen-len 32 --repeats 2 --json -q
  echo "== ppl Qwen2.5-Coder-1.5B f16, Pride and Prejudice, 8 windows"
  $VPTQ ppl -m "$QWEN" --dtype f16 --text "$CACHE/text/austen/prideprejudice.txt" --ctx 512 --max-windows 8 --json -q
fi
