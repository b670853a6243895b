"""`python -m kit pretrain-autoencoder --config recipes/autoencoder/shapes_ae.yaml`: train the shapes world's autoencoder.

A Lightning `fit` of `kit.pretrain.AutoencoderPretraining` on the shapes world's renders; every Lightning and
recipe option works as with `fit`. The data's render size is recorded in the model's config. The trained
model is written to the recipe's `model.export_to`; the kit ships it as `kit/assets/shapes-ae` (`kit:shapes-ae`).
"""

from __future__ import annotations

from kit.runner import run_pretraining

HELP = "train the shapes world's autoencoder: --config recipes/autoencoder/shapes_ae.yaml (Lightning fit options)"


def main(argv: list[str]) -> int:
    return run_pretraining(argv)
