#!/usr/bin/env bash
# The quantizer's must-show table (BENCHMARKS.md): quantize SmolLM2-135M with every method below, then
# Pride and Prejudice ppl (32×512) and held-out Brown ppl (first 16×512 of the last 10%) of each result.
# Prints one JSON line per run and leaves the folders under $OUT (default runs/quant). Quiet machine please.
#   scripts/quant_table.sh                    # every row
#   scripts/quant_table.sh v6-k4096 gptq-w2   # only rows named so, else whose name contains the word
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "${VPTQ:-}" ] || { cargo build --release --bin vptq; VPTQ=./target/release/vptq; }
CACHE="${VPTQ_CACHE:-$HOME/.cache/vptq}"
MODEL="${MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
OUT="${OUT:-runs/quant}"
COMMON=(${COMMON:-})
mkdir -p "$OUT"
$VPTQ fetch -q

# name | quantize arguments
# k = 65536 exceeds or nearly equals the vectors of most SmolLM2 layers (--clamp-centroids shrinks it per layer):
# those rows use 3 k-means iterations, the others the default 10.
ROWS=(
  "v6-k4096|--preset v6-k4096"
  "gptq-w2-g128|--preset gptq-w2-g128"
  "rtn-w2-g128|--preset rtn-w2-g128"
  "v6-k4096-64|--preset v6-k4096-64"
  "v8-k256|--preset v8-k256"
  "gptq-w3-g128|--preset gptq-w3-g128"
  "gptq-w4-g128|--preset gptq-w4-g128"
  "rtn-w3-g128|--preset rtn-w3-g128"
  "rtn-w4-g128|--preset rtn-w4-g128"
  "v6-k4096-down_proj|--preset v6-k4096 --include down_proj"
  "v6-k4096-reference-mode|--preset v6-k4096 --mode reference"
  "v6-k4096-refsettings|--preset v6-k4096 --mode reference --norm min-max --reference-hessian"
  "v8-k65536-256|--preset v8-k65536-256 --clamp-centroids --kmeans-iters 3"
  "v8-k65536|--preset v8-k65536 --clamp-centroids --kmeans-iters 3"
  "v4-k65536|--preset v4-k65536 --clamp-centroids --kmeans-iters 3"
  "v6-k4096-calib8x512|--preset v6-k4096 --calib-samples 8"
  "v6-k4096-calib128x512|--preset v6-k4096 --calib-samples 128"
  "v6-k4096-int8store|--preset v6-k4096 --codebook-storage int8"
  "v6-k4096-64-int8store|--preset v6-k4096-64 --codebook-storage int8"
  "v4-k4096-int8store|--preset v4-k4096 --codebook-storage int8"
  "v6-k4096-int8store-first2-256|--preset v6-k4096 --codebook-storage int8 --layer-preset layers.0.=v6-k4096-256 --layer-preset layers.1.=v6-k4096-256"
  # The 8 linears with the highest proxy error in the row above (blocks 2-29): as many weights as blocks 0-1.
  "v6-k4096-int8store-worst8-256|--preset v6-k4096 --codebook-storage int8 --layer-preset model.layers.5.mlp.up_proj=v6-k4096-256 --layer-preset model.layers.4.mlp.up_proj=v6-k4096-256 --layer-preset model.layers.3.mlp.down_proj=v6-k4096-256 --layer-preset model.layers.3.mlp.up_proj=v6-k4096-256 --layer-preset model.layers.6.mlp.up_proj=v6-k4096-256 --layer-preset model.layers.5.mlp.down_proj=v6-k4096-256 --layer-preset model.layers.4.mlp.down_proj=v6-k4096-256 --layer-preset model.layers.7.mlp.up_proj=v6-k4096-256"
  "v6-k4096-int8store-first1-256|--preset v6-k4096 --codebook-storage int8 --layer-preset layers.0.=v6-k4096-256"
  "v6-k4096-int8store-first1-4096|--preset v6-k4096 --codebook-storage int8 --layer-preset layers.0.=v6-k4096-4096"
  "v6-k4096-int8store-kv1024|--preset v6-k4096 --codebook-storage int8 --layer-preset k_proj=v6-k1024 --layer-preset v_proj=v6-k1024"
  "v6-k4096-int8store-first1-last1-256|--preset v6-k4096 --codebook-storage int8 --layer-preset layers.0.=v6-k4096-256 --layer-preset layers.29.=v6-k4096-256"
  "v6-k4096-int8store-first1-last1-256-calib128|--preset v6-k4096 --codebook-storage int8 --layer-preset layers.0.=v6-k4096-256 --layer-preset layers.29.=v6-k4096-256 --calib-samples 128"
  "v4-k4096-int8store-first1-last1-256-calib128|--preset v4-k4096 --codebook-storage int8 --layer-preset layers.0.=v4-k4096-256 --layer-preset layers.29.=v4-k4096-256 --calib-samples 128"
  "v6-k4096-shared|--preset v6-k4096 --codebook-storage int8 --share-codebooks"
  "v8-k65536-shared|--preset v8-k65536 --codebook-storage int8 --share-codebooks --kmeans-iters 3 --kmeans-max-vectors 262144"
  "v4-k4096-int8store-first2-256|--preset v4-k4096 --codebook-storage int8 --layer-preset layers.0.=v4-k4096-256 --layer-preset layers.1.=v4-k4096-256"
)

ppl() { $VPTQ ppl -m "$1" --text "$2" --ctx 512 --max-windows "$3" --json -q | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }

for row in "${ROWS[@]}"; do
  name="${row%%|*}"; args="${row#*|}"
  if [ $# -gt 0 ]; then
    keep=0
    for w in "$@"; do
      exact=0; for r in "${ROWS[@]}"; do [ "${r%%|*}" = "$w" ] && exact=1; done
      if [ $exact = 1 ]; then [ "$name" = "$w" ] && keep=1; else [[ "$name" == *"$w"* ]] && keep=1; fi
    done
    [ $keep = 1 ] || continue
  fi
  dir="$OUT/$name"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %M" -o "$OUT/$name.time" \
    $VPTQ quantize -m "$MODEL" -o "$dir" $args "${COMMON[@]}" --force --json -q > "$OUT/$name.quant.json"
  read -r wall rss_kib < "$OUT/$name.time"
  pride=$(ppl "$dir" pride 32)
  brown=$(ppl "$dir" brown-heldout 16)
  python3 - "$OUT/$name.quant.json" "$name" "$wall" "$rss_kib" "$pride" "$brown" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))
print(json.dumps({"name": sys.argv[2], "bits_per_weight": round(q["bits_per_weight"], 3),
                  "pride_ppl": float(sys.argv[5]), "brown_heldout_ppl": float(sys.argv[6]),
                  "wall_secs": float(sys.argv[3]), "peak_rss_mib": int(sys.argv[4]) // 1024,
                  "mean_proxy_err": q["mean_proxy_err"], "layers": q["layers"],
                  **({"bits_per_weight_codebooks_once": round(q["bits_per_weight_codebooks_once"], 3)}
                     if "bits_per_weight_codebooks_once" in q else {})}))
PY
done
