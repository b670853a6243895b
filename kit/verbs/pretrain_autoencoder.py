"""`python -m kit pretrain-autoencoder --config recipes/autoencoder/shapes_ae.yaml`: train the shapes world's autoencoder.

A Lightning `fit` of `kit.tasks.AutoencoderPretraining` on the shapes world's renders; every Lightning and
recipe option works as with `fit`. The trained model is written to the recipe's `model.export_to`; the kit
ships it as `kit/assets/shapes-ae` (`kit:shapes-ae`).
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningArgumentParser

from kit.runner import ConfigurationError, KitCLI, run_cli

HELP = "train the shapes world's autoencoder: --config recipes/autoencoder/shapes_ae.yaml (Lightning fit options)"


class AutoencoderPretrainCLI(KitCLI):
    """The kit's CLI for autoencoder pretraining: the data's render size is the model's image size."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")


def main(argv: list[str]) -> int:
    try:
        run_cli(["fit", *argv], cli_class=AutoencoderPretrainCLI)
    except ConfigurationError as e:
        print(f"error: the recipe cannot be built: {e}", file=sys.stderr)
        return 2
    return 0
