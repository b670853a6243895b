"""`python -m kit shard --config RECIPE --out DIR`: write a recipe's training data as litdata streaming chunks.

Writes the training items a run of the recipe draws (max_steps x batch size x ranks, or `--train-items`)
to `DIR/train` and its validation items to `DIR/val`, as `kit.data.streaming` describes: the shapes
world's renders, or an image folder's decoded and resized images (undecodable ones skipped and
counted). `python -m kit cache --format litdata` writes the same with the recipe's frozen-encoder
features in every item. Train from it with

    python -m kit fit -c RECIPE --data=kit.data.StreamingImageTextData --data.input_dir=DIR/train --data.val_dir=DIR/val
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from kit.verbs.parsing import VerbParser

HELP = "write a recipe's training and validation data as litdata streaming chunks: --config RECIPE --out DIR"


def items_of(dataset, count: int, encoder=None, batch_size: int = 64, skipped: list | None = None) -> Iterator[dict]:
    """The first `count` items of a map-style dataset as `{"image": uint8 (H, W, 3), "prompt"}`, with the encoder's
    features (`hidden`, `kinds`, real tokens only) when `encoder` is given; undecodable items are counted in `skipped`."""
    import torch

    from kit.images import tensor_to_image

    for start in range(0, count, batch_size):
        batch = []
        for i in range(start, min(start + batch_size, count)):
            item = dataset[i]
            if item is None:
                if skipped is not None:
                    skipped.append(i)
                continue
            batch.append({"image": tensor_to_image(item["image"]), "prompt": item["prompt"]})
        if encoder is not None and batch:
            with torch.no_grad():
                out = encoder([b["prompt"] for b in batch])
            for k, b in enumerate(batch):
                m = out.mask[k]
                b["hidden"], b["kinds"] = out.hidden_states[k][:, m].cpu(), out.kinds[k][m].cpu()
        yield from batch


def _counted(items: Iterator[dict], bar) -> Iterator[dict]:
    for item in items:
        bar.update(1)
        yield item


def write_recipe_data(cli, out: str, train_items: int | None, *, features: bool, storage_dtype: str = "bfloat16", chunk_bytes: str = "64MB") -> int:
    """Write `cli`'s datamodule's training and validation items under `out/train` and `out/val`; 0 on success, 2 with a printed error."""
    from kit.data.streaming import write_streaming

    data, trainer = cli.datamodule, cli.trainer
    encoder = cli.model.encoder if features else None
    if features and (encoder is None or encoder.fingerprint() is None):
        print(f"error: {type(encoder).__name__} trains with the model, so its features cannot be stored (a cache needs a frozen encoder)", file=sys.stderr)
        return 2
    for name in ("train_set", "val_set"):
        if not hasattr(getattr(data, name, None), "__getitem__"):
            print(f"error: {type(data).__name__} has no indexable {name} to write", file=sys.stderr)
            return 2
    from kit.data.shapes import items_drawn

    count = min(train_items or items_drawn(trainer, data.batch_size), len(data.train_set))
    fingerprint = encoder.fingerprint() if encoder is not None else None
    started = time.perf_counter()
    for split, dataset, n in (("train", data.train_set, count), ("val", data.val_set, len(data.val_set))):
        skipped: list[int] = []
        with tqdm(total=n, desc=f"writing {split}", unit="item") as bar:
            written = write_streaming(
                _counted(items_of(dataset, n, encoder, skipped=skipped), bar),
                Path(out) / split,
                fingerprint=fingerprint,
                storage_dtype=storage_dtype,
                chunk_bytes=chunk_bytes,
            )
        note = f" ({len(skipped)} undecodable items skipped)" if skipped else ""
        print(f"{split}: {written} items{' with features' if features else ''} -> {Path(out) / split}{note}")
    print(
        f"done in {time.perf_counter() - started:.1f} s; train with --data=kit.data.StreamingImageTextData --data.input_dir={out}/train --data.val_dir={out}/val"
    )
    return 0


def main(argv: list[str]) -> int:
    p = VerbParser(prog="python -m kit shard", description="Write a recipe's training and validation data as litdata streaming chunks.")
    p.add_argument("-c", "--config", type=str, action="append", required=True, help="recipe files, composed left to right")
    p.add_argument("--out", type=str, required=True, help="output folder (train/ and val/ are written under it; they must not exist yet)")
    p.add_argument("--train-items", type=int | None, default=None, help="training items to write (max_steps x batch size x ranks when omitted)")
    p.add_argument("--chunk-bytes", type=str, default="64MB", help="size of each litdata chunk")
    p.add_argument("--set", type=str, action="append", default=[], help="extra recipe overrides, e.g. --set=--trainer.max_steps=600")
    args = p.parse_args(argv)
    return run(args, features=False)


def run(args, *, features: bool, storage_dtype: str = "bfloat16") -> int:
    """Build the recipe (before anything is written) and write its data; shared with `kit cache --format litdata`."""
    from kit.runner import ConfigurationError, run_cli

    try:
        import litdata  # noqa: F401
    except ImportError:
        print('error: streaming needs litdata: pip install -e ".[stream]"', file=sys.stderr)
        return 2
    for split in ("train", "val"):
        if (Path(args.out) / split).exists():
            print(f"error: {Path(args.out) / split} exists; write to a new folder (a streaming dataset is written whole)", file=sys.stderr)
            return 2
    no_cache = ["--data.init_args.feature_cache=null"] if features else []  # features are computed afresh (the shapes data has this knob)
    cli_args = ["fit", *[a for c in args.config for a in ("-c", c)], "--trainer.logger=false", *no_cache, *args.set]
    try:
        cli = run_cli(cli_args, run=False)
    except ConfigurationError as e:
        print(f"error: the recipe cannot be built: {e}", file=sys.stderr)
        return 2
    return write_recipe_data(cli, args.out, args.train_items, features=features, storage_dtype=storage_dtype, chunk_bytes=args.chunk_bytes)
