#!/usr/bin/env bash
# Issue 4's must-show table: decode / prefill (128-token prompt) tok/s and peak RSS of SmolLM2-135M dense f32,
# f16 and VPTQ-quantized folders, threads 1 and 2, all in one run (peak RSS as `bench` reads it, before its
# bandwidth probe allocates). Usage:
#   scripts/bench_vq.sh runs/quant/v6-k4096 runs/quant/v8-k65536 ...   (folders from scripts/quant_table.sh)
# A folder may carry extra bench arguments after commas, e.g. runs/quant/v6-k4096,--codebooks,f32 or
# runs/quant/v6-k4096,--embed-dtype,q8; its row is named after the folder and the arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "${VPTQ:-}" ] || { cargo build --release --bin vptq; VPTQ=./target/release/vptq; }
CACHE="${VPTQ_CACHE:-$HOME/.cache/vptq}"
SMOL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
row() { # name, model, extra args...
  local name=$1 model=$2; shift 2
  for t in 1 2; do
    $VPTQ bench -m "$model" "$@" --threads "$t" --prompt-len 128 --gen-len 64 --repeats 3 --json -q > /tmp/bench_vq.json
    python3 - "$name" "$t" <<'PY'
import json, sys
b = json.load(open("/tmp/bench_vq.json"))
print(json.dumps({"model": sys.argv[1], "threads": int(sys.argv[2]), "decode_tok_s": round(b["decode_tok_s"], 1),
                  "prefill_tok_s": round(b["prefill_tok_s"], 1), "weight_mb_per_token": round(b["weight_bytes_per_token"] / 1e6, 1),
                  "decode_bound_tok_s": round(b["decode_bound_tok_s"], 1), "peak_rss_mib": b["peak_rss_bytes"] // 2**20}))
PY
  done
}
row dense-f32 "$SMOL" --dtype f32
row dense-f16 "$SMOL" --dtype f16
for spec in "$@"; do
  IFS=, read -r -a parts <<< "$spec"
  dir=${parts[0]}; extra=("${parts[@]:1}")
  name=$(basename "$dir"); [ ${#extra[@]} -gt 0 ] && name="$name ${extra[*]}"
  row "$name" "$dir" "${extra[@]}"
done
