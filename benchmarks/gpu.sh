#!/usr/bin/env bash
# One GPU check, in at most ~8 minutes on one lent GPU: writes results/gpu/ (commit it, with the GPU's name).
#   bash benchmarks/gpu.sh            # from the repository root, in the kit's environment (.venv or the active python)
#   GPU_SH_DRY=1 bash benchmarks/gpu.sh   # print the steps without running them (what the CPU tests check)
# Steps, each with its own time limit so one stuck step cannot eat the rest (limits sum to 470 s):
#   1. the three kernel benchmarks at their realistic GPU shapes (65,536 tokens, 12 taps, W 2560/4096, bf16)
#   2. the GPU-marked tests (bf16 kernels, the compiled Triton path)
#   3. the train-step benchmark: DiT-B/2, bf16 autocast, cached features, batch 64 (samples/s, peak memory, MFU)
#   4. the default recipe (recipes/lap.yaml) on the GPU for 300 steps: samples/s, to set against the CPU's
#      (results/quickstart_eval.json: measured.steps_per_fit_second x 16 samples a step)
# A step that fails is recorded in results/gpu/status.txt and the script goes on; it exits 1 if any failed.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=results/gpu
mkdir -p "$OUT"
failed=0

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  if [ -n "${GPU_SH_DRY:-}" ]; then return 0; fi
  local started=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - started))" | tee -a "$OUT/status.txt"
  [ $rc -eq 0 ] || failed=1
}

if [ -z "${GPU_SH_DRY:-}" ]; then
  "$PY" - > "$OUT/device.txt" <<'PYEOF'
import torch, platform
print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", platform.python_version())
PYEOF
  cat "$OUT/device.txt"
  date -u +"started %Y-%m-%dT%H:%M:%SZ" > "$OUT/status.txt"
  git rev-parse --short HEAD >> "$OUT/status.txt" 2>/dev/null
fi

step kernels_attention_pool 60 "$PY" kernels/bench/attention_pool.py --out "$OUT/kernels.jsonl"
step kernels_weighted_sum 45 "$PY" kernels/bench/weighted_sum.py --out "$OUT/kernels.jsonl"
step kernels_layer_attention 60 "$PY" kernels/bench/layer_attention.py --out "$OUT/kernels.jsonl"
step pytest_gpu 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider
step train_step_b2 90 "$PY" benchmarks/train_step.py --presets b2 --modes cached --precision bf16 --batch 64 --steps 10 --warmup 3 --device cuda --out "$OUT/train_step.jsonl"
step fit_speed_lap 95 "$PY" benchmarks/fit_speed.py --variant "lap_gpu=recipes/lap.yaml::--trainer.accelerator=gpu --trainer.precision=32-true" --steps 300 --warmup 30 --out "$OUT/fit_speed.jsonl"
exit $failed
