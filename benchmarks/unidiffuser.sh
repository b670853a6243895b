#!/usr/bin/env bash
# The joint model's measurements, one step after another (each with the whole CPU), resumable (a finished step is skipped):
#   1. the text codec (recipes/joint/text_latent.yaml)            -> runs/joint/text_latent
#   2. the joint model, CFG for free (recipes/unidiffuser.yaml)   -> runs/joint/unidiffuser
#   3. its evaluation (kit evaluate --task joint)                -> results/joint_eval.json
#   4. the learned-null baseline (recipes/joint/learned_null.yaml: the same run with 10 % null texts) -> runs/joint/learned_null
#   5. its evaluation                                             -> results/joint_learned_null_eval.json
#   bash benchmarks/unidiffuser.sh                  # all of it (about 45 minutes on 2 cores)
#   STEPS="1 2 3" bash benchmarks/unidiffuser.sh    # some of it
#   EVAL_ARGS="--per-category 20" bash ...          # a smaller evaluation
# A lever (a variant of the joint model, trained with the same codec) goes into its own folders:
#   ROOT=runs/joint_levers/clean07 CODEC=runs/joint/text_latent/version_0/checkpoints/last.ckpt \
#   OVERLAY=recipes/joint/levers/clean07.yaml RESULTS=results/joint_levers/clean07 STEPS="2 3" bash benchmarks/unidiffuser.sh
# and SEED=1 trains both joint fits under another seed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
ROOT=${ROOT:-runs/joint}
STEPS=${STEPS:-1 2 3 4 5}
CODEC=${CODEC-$ROOT/text_latent/version_0/checkpoints/last.ckpt}  # unset: this root's; set empty: none
RESULTS=${RESULTS:-results}  # the evaluations: $RESULTS/joint_eval.json, $RESULTS/joint_learned_null_eval.json
EXTRA=(); for overlay in ${OVERLAY:-}; do EXTRA+=(-c "$overlay"); done  # recipe overlays (a list) on both joint fits
[ -n "$CODEC" ] && EXTRA+=("--model.init_args.text_codec=$CODEC")  # CODEC= (empty): none, for the masked text stream
[ -n "${SEED:-}" ] && EXTRA+=("--seed_everything=$SEED")  # another seed of both joint fits (the recipe's is 0)
wants() { [[ " $STEPS " == *" $1 "* ]]; }
fit() {  # fit NAME RECIPE... -- extra arguments
  local name=$1; shift
  if [ -f "$ROOT/$name/version_0/checkpoints/last.ckpt" ] && [ -f "$ROOT/$name/done" ]; then echo "skip $name (done)"; return 0; fi
  rm -rf "${ROOT:?}/$name"
  echo "== fit $name: $*"
  local started=$SECONDS
  "$PY" -m kit fit "$@" --trainer.logger.init_args.save_dir="$ROOT" --trainer.logger.init_args.name="$name" --trainer.logger.init_args.version=version_0
  echo "$((SECONDS - started))" > "$ROOT/$name/done"  # wall seconds of the fit
}
evaluate() {  # evaluate NAME OUT
  local ckpt=$ROOT/$1/version_0/checkpoints/last.ckpt
  if [ -f "$2" ] && grep -q "\"checkpoint\": \"$ckpt\"" "$2"; then echo "skip evaluation of $1 (done)"; return 0; fi
  echo "== evaluate $1 -> $2"
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of arguments
  mkdir -p "$(dirname "$2")"
  "$PY" -m kit evaluate --task joint --ckpt "$ckpt" --out "$2" ${EVAL_ARGS:-}
}
wants 1 && fit text_latent -c recipes/joint/text_latent.yaml --trainer.callbacks='[{"class_path": "kit.callbacks.FinalCheckpoint", "init_args": {"save_last": true}}]'
wants 2 && fit unidiffuser -c recipes/unidiffuser.yaml "${EXTRA[@]}"
wants 3 && evaluate unidiffuser "$RESULTS/joint_eval.json"
wants 4 && fit learned_null -c recipes/unidiffuser.yaml "${EXTRA[@]}" -c recipes/joint/learned_null.yaml
wants 5 && evaluate learned_null "$RESULTS/joint_learned_null_eval.json"
exit 0
