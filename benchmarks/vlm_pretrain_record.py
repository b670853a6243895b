"""Record how a shapes-VLM pretraining run went, from its TensorBoard events and its export.

    python -m kit pretrain-vlm --config recipes/vlm/shapes_vlm.yaml --model.init_args.export_to=kit/assets/shapes-vlm
    python benchmarks/vlm_pretrain_record.py --run runs/shapes_vlm/version_0 --export kit/assets/shapes-vlm \
        --command "python -m kit pretrain-vlm ..." --note "what else ran beside it" --out results/vlm_pretrain.json

Writes the steps trained, the wall seconds between the first and the last logged step (and per
step), the exported model's parameters and size on disk, its weights digest (the one
`results/vlm.json` names), the training command and the commit, so the README's figures about
the shipped VLM come from a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="the pretraining run's log folder (runs/shapes_vlm/version_N)")
    p.add_argument("--export", required=True, help="the exported model folder")
    p.add_argument("--command", required=True, help="the pretraining command as it was run")
    p.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    p.add_argument("--out", default=str(ROOT / "results" / "vlm_pretrain.json"))
    args = p.parse_args(argv)
    from safetensors import safe_open
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kit.analysis.provenance import commit
    from kit.encoders.frozen import weights_digest

    events = EventAccumulator(args.run, size_guidance={"scalars": 0})
    events.Reload()
    loss = events.Scalars("train/loss")
    if len(loss) < 2:
        print(f"error: {args.run} has fewer than two logged training steps", file=sys.stderr)
        return 2
    seconds = loss[-1].wall_time - loss[0].wall_time
    weights = Path(args.export) / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        parameters = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    record = {
        "command": args.command,
        "commit": commit(),
        "steps": int(loss[-1].step) + 1,  # a step's loss is logged under the 0-based index of that step
        "train_seconds": round(seconds, 1),
        "train_minutes": round(seconds / 60, 1),
        "seconds_per_step": round(seconds / (loss[-1].step - loss[0].step), 3),
        "final_train_loss": round(float(loss[-1].value), 4),
        "parameters": parameters,
        "parameters_millions": round(parameters / 1e6, 1),
        "size_mb": round(weights.stat().st_size / 2**20, 1),
        "weights": weights_digest(args.export, None),
        "note": args.note,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


if __name__ == "__main__":
    raise SystemExit(main())
