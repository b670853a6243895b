#!/usr/bin/env bash
# Editing fine-tuning as a curve: one VLM-only run of STEPS steps (default 3000, about 19 minutes on the 2-core CPU)
# from the quickstart checkpoint, scored by `kit evaluate-edit` at each saved checkpoint (every 1,300 steps and the last).
#   bash benchmarks/editing_long.sh T2I_CKPT [STEPS] [SEED]
# Resumable: a finished fit and written scores are kept. Out: runs/editing_long/, results/editing_long/.
set -euo pipefail
cd "$(dirname "$0")/.."
T2I=${1:?usage: benchmarks/editing_long.sh T2I_CKPT [STEPS] [SEED]}
STEPS=${2:-3000}
SEED=${3:-0}
PY=${PYTHON:-.venv/bin/python}
NAME=vlm_only_${STEPS}_seed${SEED}
RUN=runs/editing_long/$NAME/version_0
OUT=results/editing_long
mkdir -p "$OUT"
if [ ! -f "$RUN/checkpoints/last.ckpt" ]; then
  rm -rf "$RUN"
  start=$(date +%s)
  $PY -m kit fit -c recipes/lap.yaml -c recipes/edit.yaml --seed_everything="$SEED" --trainer.max_steps="$STEPS" \
    --trainer.logger.init_args.save_dir=runs/editing_long --trainer.logger.init_args.name="$NAME" --trainer.logger.init_args.version=version_0 \
    --model.init_args.init_from="$T2I" > "$OUT/$NAME.fit.log" 2>&1
  echo "{\"fit_seconds\": $(( $(date +%s) - start )), \"steps\": $STEPS, \"seed\": $SEED, \"commit\": \"$(git rev-parse --short HEAD)\"}" > "$OUT/$NAME.fit.json"
fi
for ckpt in "$RUN"/checkpoints/*.ckpt; do
  tag=$(basename "$ckpt" .ckpt)
  [ -f "$OUT/${NAME}_${tag}.json" ] || $PY -m kit evaluate-edit --ckpt "$ckpt" --per-kind 20 --compositions 20 --out "$OUT/${NAME}_${tag}.json" >> "$OUT/$NAME.eval.log" 2>&1
done
