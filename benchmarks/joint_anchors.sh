#!/usr/bin/env bash
# The joint model's anchors and its default, scored on held-out scenes, one step after another (resumable; each
# with the whole CPU): the text codec, then for each variant a fit of recipes/unidiffuser.yaml (+ overlay) and
# `kit evaluate --task joint` -> results/joint_anchors/<variant>/joint_eval.json.
#   i2t_only  the image always clean: the upper bound of the caption path
#   t2i_only  the caption always clean: the text-to-image reference of the joint network
#   default   the recipe as it is
#   VARIANTS="i2t_only" SEED=0 bash benchmarks/joint_anchors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANTS=${VARIANTS:-i2t_only default t2i_only}
SEED=${SEED:-0}
EVAL_ARGS=${EVAL_ARGS:---per-category 8}
STEPS=1 bash benchmarks/unidiffuser.sh
for variant in $VARIANTS; do
  overlay=""; [ "$variant" != default ] && overlay=recipes/joint/levers/$variant.yaml
  ROOT=runs/joint_anchors/${variant}_seed$SEED CODEC=runs/joint/text_latent/version_0/checkpoints/last.ckpt OVERLAY=$overlay SEED=$SEED \
    RESULTS=results/joint_anchors/${variant}_seed$SEED EVAL_ARGS="$EVAL_ARGS" STEPS="2 3" bash benchmarks/unidiffuser.sh
done
