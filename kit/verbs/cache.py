"""`python -m kit cache --config RECIPE --out DIR`: run the recipe's frozen encoder once over its data.

Encodes the prompts of the training items a run of the recipe will draw (max_steps x batch
size x DDP ranks, or `--train-items`) and of the validation set, each distinct prompt once, into safetensors
shards keyed by the encoder's fingerprint (`kit.encoders.cache`). Interrupted runs resume.
Train from it with `--data.init_args.feature_cache=DIR`; a cache built with another encoder
configuration is refused with both fingerprints.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from kit.verbs.parsing import VerbParser
from kit.verbs.shard import run as write_shards

HELP = "encode a recipe's prompts once with its frozen encoder into a feature cache: --config RECIPE --out DIR"


def main(argv: list[str]) -> int:
    p = VerbParser(prog="python -m kit cache", description="Cache a recipe's frozen-encoder features for its training and validation prompts.")
    p.add_argument("-c", "--config", type=str, action="append", required=True, help="recipe files, composed left to right")
    p.add_argument("--out", type=str, required=True, help="cache directory (resumed if it holds a cache of the same encoder)")
    p.add_argument("--train-items", type=int | None, default=None, help="training items to cover (max_steps x batch size when omitted)")
    p.add_argument("--batch-size", type=int, default=64, help="prompts per encoder batch")
    p.add_argument("--shard-size", type=int, default=2048, help="entries per shard")
    p.add_argument("--dtype", type=str, default="bfloat16", help="storage dtype of the hidden states: bfloat16, float16 or float32")
    p.add_argument("--set", type=str, action="append", default=[], help="extra recipe overrides, e.g. --set=--trainer.max_steps=600")
    p.add_argument(
        "--format",
        type=str,
        default="safetensors",
        help="safetensors: a cache keyed by prompt, read by --data.init_args.feature_cache; litdata: streaming chunks of "
        "images, prompts and features under OUT/train and OUT/val, read by kit.data.StreamingImageTextData",
    )
    p.add_argument("--chunk-bytes", type=str, default="64MB", help="size of each litdata chunk (--format litdata)")
    args = p.parse_args(argv)
    if args.format not in ("safetensors", "litdata"):
        print(f"error: unknown --format {args.format!r}; choose safetensors or litdata", file=sys.stderr)
        return 2
    if args.format == "litdata":
        return write_shards(args, features=True, storage_dtype=args.dtype)

    from kit.encoders.cache import CacheMismatchError, build_cache, parse_item
    from kit.runner import ConfigurationError, run_cli

    cli_args = ["fit", *[a for c in args.config for a in ("-c", c)], "--trainer.logger=false", "--data.init_args.feature_cache=null", *args.set]
    try:
        cli = run_cli(cli_args, run=False)
    except ConfigurationError as e:
        print(f"error: the recipe cannot be built: {e}", file=sys.stderr)
        return 2
    data, encoder, trainer = cli.datamodule, cli.model.encoder, cli.trainer
    if encoder.fingerprint() is None:
        print(f"error: {type(encoder).__name__} trains with the model, so its features cannot be cached (a cache needs a frozen encoder)", file=sys.stderr)
        return 2
    if not hasattr(data, "cache_keys"):
        print(f"error: {type(data).__name__} cannot list its prompts for a cache (it has no cache_keys)", file=sys.stderr)
        return 2
    from kit.data.shapes import items_drawn

    items = args.train_items or items_drawn(trainer, data.batch_size)
    keys = data.cache_keys(items)
    started = time.perf_counter()
    print(
        f"caching {len({parse_item(k)[0] for k in keys})} distinct items of {items} training items + {len(data.val_set)} validation items with {encoder.name} -> {args.out}"
    )
    try:
        cache = build_cache(
            encoder, keys, args.out, shard_size=args.shard_size, batch_size=args.batch_size, storage_dtype=args.dtype, progress=True, log=tqdm.write
        )
    except CacheMismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cache.record(train_items=max(items, cache.manifest.get("data", {}).get("train_items", 0)), val_items=len(data.val_set))
    print(f"{len(cache)} entries in {len(cache.manifest['shards'])} shards, {time.perf_counter() - started:.1f} s -> {args.out}")
    return 0
