"""`python -m kit pretrain-vlm --config recipes/vlm/shapes_vlm.yaml`: train the shapes VLM from scratch.

A Lightning `fit` of `kit.vlm.ShapesVLMPretraining` on `kit.vlm.VLMTaskData`; every
Lightning and recipe option works as with `fit` (`--trainer.max_steps=...`, `-c overlay.yaml`).
The trained model and its processor are saved to the recipe's `model.export_to`.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningArgumentParser

from kit.runner import ConfigurationError, KitCLI, run_cli

HELP = "train the shapes VLM from scratch: --config recipes/vlm/shapes_vlm.yaml (Lightning fit options)"


class VLMPretrainCLI(KitCLI):
    """The kit's CLI for VLM pretraining: the data's render size is the model's image size."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")


def main(argv: list[str]) -> int:
    try:
        run_cli(["fit", *argv], cli_class=VLMPretrainCLI)
    except ConfigurationError as e:
        print(f"error: the recipe cannot be built: {e}", file=sys.stderr)
        return 2
    return 0
