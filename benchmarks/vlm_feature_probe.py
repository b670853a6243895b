"""Linear probe of a frozen encoder's features: which token, at which layer, says *what* and *where*?

    python benchmarks/vlm_feature_probe.py                                   # the shapes VLM
    python benchmarks/vlm_feature_probe.py --model kit:shapes-vlm-random     # the random VLM
    python benchmarks/vlm_feature_probe.py --echo                            # the prompt's second copy (FrozenEncoder echo)

Encodes single-object detailed captions ("a large red circle in the top left") through the
recipe's encoder and fits a ridge-regression probe (one-hot targets, standardised features,
`--train` items, scored on `--test` others) from the hidden state of one token at each tapped
layer to the object's cell (9 classes), colour (6), shape (4) and size (2). Two tokens are read:

- `last`: the last prompt token (the end of the place phrase): everything a causal model has
  read by the end of the prompt;
- `noun`: the shape word ("circle"): the object, before its place is read.

A conditioning token that a DiT can bind without help would carry both what and where; this
says whether any one token of the encoder does. Chance: cell 0.11, colour 0.17, shape 0.25,
size 0.50. With `--echo` the encoder reads each prompt twice and the probed tokens are those of
the second copy, which has read the whole prompt. Results are appended to `--out` (JSON lines) with the command and the commit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("cell", "colour", "shape", "size")


def ridge_accuracy(features: np.ndarray, labels: np.ndarray, num_train: int, alpha: float = 10.0) -> float:
    """Accuracy on items `num_train:` of a ridge probe fitted on items `:num_train` (one-hot targets)."""
    mean, std = features[:num_train].mean(0), features[:num_train].std(0) + 1e-6
    f = (features - mean) / std
    onehot = np.eye(labels.max() + 1)[labels[:num_train]]
    w = np.linalg.solve(f[:num_train].T @ f[:num_train] + alpha * np.eye(f.shape[1]), f[:num_train].T @ onehot)
    return float(((f[num_train:] @ w).argmax(1) == labels[num_train:]).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", default=str(ROOT / "recipes" / "lap.yaml"), help="the recipe whose encoder is probed")
    p.add_argument("--model", default=None, help="replace the recipe encoder's model (e.g. kit:shapes-vlm-random)")
    p.add_argument("--echo", action="store_true", help="encode each prompt twice and probe the second copy (FrozenEncoder echo)")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "results" / "vlm_feature_probe.jsonl"))
    args = p.parse_args(argv)
    from kit.analysis.provenance import append_record, command_line, commit
    from kit.cli import run_cli
    from kit.types import TokenKind
    from kit.world import caption
    from kit.world.scene import COLOURS, GRID, SHAPES, SIZES, sample_scene

    overrides = [f"--model.init_args.encoder.init_args.model={args.model}"] if args.model else []
    overrides += ["--model.init_args.encoder.init_args.echo=true"] if args.echo else []
    encoder = run_cli(["-c", args.config, "--trainer.logger=false", *overrides], run=False).model.encoder
    rng = np.random.default_rng(args.seed)
    prompts, labels = [], {k: [] for k in TARGETS}
    for _ in range(args.train + args.test):
        scene = sample_scene(rng, 1)
        obj = scene.objects[0]
        prompts.append(caption(scene, "detailed", rng))
        labels["cell"].append(obj.row * GRID + obj.col)
        labels["colour"].append(list(COLOURS).index(obj.colour))
        labels["shape"].append(SHAPES.index(obj.shape))
        labels["size"].append(SIZES.index(obj.size))
    feats: dict[str, list[np.ndarray]] = {"last": [], "noun": []}
    with torch.no_grad():
        for start in range(0, len(prompts), 100):
            chunk = prompts[start : start + 100]
            out = encoder(chunk)
            for b, prompt in enumerate(chunk):
                positions = (out.kinds[b] == int(TokenKind.PROMPT)).nonzero().flatten()  # the prompt's own tokens
                words = [encoder.tokenizer.decode([i]).strip() for i in encoder.tokenizer(prompt)["input_ids"]]
                if len(words) != len(positions):
                    raise RuntimeError(f"prompt {prompt!r}: {len(words)} tokens alone but {len(positions)} in the template")
                noun = next((j for j, w in enumerate(words) if w in SHAPES), None)
                if noun is None:
                    raise SystemExit(
                        f"vlm_feature_probe: the tokenizer splits the shape word of {prompt!r} ({words}); this probe needs word-level shape tokens"
                    )
                feats["last"].append(out.hidden_states[b, :, positions[-1]].float().numpy())  # (L, D)
                feats["noun"].append(out.hidden_states[b, :, positions[noun]].float().numpy())
    y = {k: np.asarray(v) for k, v in labels.items()}
    rows = []
    for token, stack in feats.items():
        f = np.stack(stack)  # (N, L, D)
        for layer in range(f.shape[1]):
            row = {"token": token, "tap": int(encoder.taps[layer]) if hasattr(encoder, "taps") else layer}
            row.update({k: ridge_accuracy(f[:, layer], y[k], args.train) for k in TARGETS})
            rows.append(row)
            print(f"{token:5s} tap {row['tap']:2d}  " + "  ".join(f"{k} {row[k]:.2f}" for k in TARGETS), flush=True)
    append_record(
        args.out,
        {
            "command": command_line("benchmarks/vlm_feature_probe.py", argv),
            "commit": commit(),
            "model": args.model or "recipe",
            "echo": args.echo,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
