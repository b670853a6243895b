#!/usr/bin/env bash
# The fusion ablation: every head overlay here x SEEDS, into ROOT/<head>/seed<k>, then the table.
#   bash recipes/ablations/fusion/run.sh                       # all heads, seeds 0 1 2
#   VARIANTS="lap last_layer" SEEDS="0" bash recipes/ablations/fusion/run.sh
#   JOBS=2 bash recipes/ablations/fusion/run.sh                # two runs at a time, cores split between them
#   bash recipes/ablations/fusion/run.sh --trainer.max_steps=300   # extra arguments go to every fit
#   CACHE_ARGS="--train-items 12" bash recipes/ablations/fusion/run.sh -c recipes/smoke.yaml   # what the test runs
# The frozen encoder's features are cached once (every head reads the same taps) and shared.
# Finished runs (trained and scored: a `done` file) are skipped, so an interrupted study resumes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HERE=recipes/ablations/fusion
if [ -x .venv/bin/python ]; then default_py=.venv/bin/python; else default_py=python; fi  # the checkout's venv when it has one
export PY=${PYTHON:-$default_py}
export ROOT=${ROOT:-runs/fusion}
SEEDS=${SEEDS:-0 1 2}
export CACHE=${CACHE:-cache/fusion}  # ROOT, CACHE and REPORT (the comparison's folder) can be moved
JOBS=${JOBS:-1}
VARIANTS=${VARIANTS:-$(for f in "$HERE"/*.yaml; do n=$(basename "$f" .yaml); [ "$n" != base ] && echo "$n"; done)}
# shellcheck disable=SC2086  # CACHE_ARGS is a list of arguments
"$PY" -m kit cache -c recipes/lap.yaml -c "$HERE/base.yaml" --out "$CACHE" ${CACHE_ARGS:-}

run_one() {  # run_one VARIANT SEED [extra fit arguments...]
  local variant=$1 seed=$2
  shift 2
  local dir="$ROOT/$variant/seed$seed"
  if [ -f "$dir/done" ]; then echo "skip $variant seed $seed (done)"; return 0; fi
  rm -rf "$dir"  # an unfinished run starts over
  echo "== $variant seed $seed"
  "$PY" -m kit fit -c recipes/lap.yaml -c "$HERE/base.yaml" -c "$HERE/$variant.yaml" --seed_everything "$seed" \
    --data.init_args.feature_cache "$CACHE" \
    --trainer.logger.init_args.save_dir "$(dirname "$ROOT")" \
    --trainer.logger.init_args.name "$(basename "$ROOT")/$variant" \
    --trainer.logger.init_args.version "seed$seed" "$@"
  touch "$dir/done"  # trained and scored
}
export -f run_one
if [ "$JOBS" -gt 1 ]; then  # one process per job, each with its share of the cores
  threads=$(($(nproc) / JOBS))
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((threads > 0 ? threads : 1))}
fi
extra=""
[ $# -gt 0 ] && extra=$(printf ' %q' "$@")
for seed in $SEEDS; do  # seed-major: an interrupted study has every head at its first seeds
  for variant in $VARIANTS; do printf '%s\0%s\0' "$variant" "$seed"; done
done | xargs -0 -n 2 -P "$JOBS" bash -c 'run_one "$1" "$2"'"$extra" _
"$PY" -m kit compare "$ROOT" --metric eval/dpg eval/overall val/loss --out "${REPORT:-$HERE/report}"
