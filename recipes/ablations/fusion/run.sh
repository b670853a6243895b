#!/usr/bin/env bash
# The fusion ablation: every head overlay here x SEEDS, into ROOT/<head>/seed<k>, then the table.
#   bash recipes/ablations/fusion/run.sh                       # all heads, seeds 0 1 2
#   VARIANTS="lap last_layer" SEEDS="0" bash recipes/ablations/fusion/run.sh
# The frozen encoder's features are cached once (every head reads the same taps) and shared.
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=recipes/ablations/fusion
PY=${PYTHON:-python}
SEEDS=${SEEDS:-0 1 2}
ROOT=${ROOT:-runs/fusion}
CACHE=${CACHE:-cache/fusion}
VARIANTS=${VARIANTS:-$(for f in "$HERE"/*.yaml; do n=$(basename "$f" .yaml); [ "$n" != base ] && echo "$n"; done)}
BASE=(-c recipes/lap.yaml -c "$HERE/base.yaml")
"$PY" -m kit cache "${BASE[@]}" --out "$CACHE"
for variant in $VARIANTS; do
  for seed in $SEEDS; do
    if [ -f "$ROOT/$variant/seed$seed/checkpoints/last.ckpt" ]; then echo "skip $variant seed $seed (done)"; continue; fi
    echo "== $variant seed $seed"
    "$PY" -m kit fit "${BASE[@]}" -c "$HERE/$variant.yaml" --seed_everything "$seed" \
      --data.init_args.feature_cache "$CACHE" \
      --trainer.logger.init_args.save_dir "$(dirname "$ROOT")" \
      --trainer.logger.init_args.name "$(basename "$ROOT")/$variant" \
      --trainer.logger.init_args.version "seed$seed" "$@"
  done
done
"$PY" -m kit compare "$ROOT" --metric eval/overall val/loss --out "$HERE/report"
