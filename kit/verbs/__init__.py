"""The kit's own command-line verbs: each module has `HELP` (one line) and `main(argv) -> int`.

`VERBS` is built from real imports, so a verb that does not import fails here, at start-up, not when
someone first runs it; `kit.cli` dispatches to it.
"""

from types import ModuleType

from kit.verbs import (
    build_tiny_vlm,
    cache,
    compare,
    describe,
    eval_vlm,
    evaluate,
    evaluate_edit,
    oracle_check,
    pretrain_autoencoder,
    pretrain_vlm,
    registry,
    sample,
    shard,
)

VERBS: dict[str, ModuleType] = {
    "sample": sample,
    "evaluate": evaluate,
    "evaluate-edit": evaluate_edit,
    "oracle-check": oracle_check,
    "cache": cache,
    "shard": shard,
    "compare": compare,
    "describe": describe,
    "registry": registry,
    "pretrain-vlm": pretrain_vlm,
    "eval-vlm": eval_vlm,
    "build-tiny-vlm": build_tiny_vlm,
    "pretrain-autoencoder": pretrain_autoencoder,
}
"""Verb name -> its module, in the order `python -m kit --help` lists them."""
