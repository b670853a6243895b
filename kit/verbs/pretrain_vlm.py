"""`python -m kit pretrain-vlm --config recipes/vlm/shapes_vlm.yaml`: train the shapes VLM from scratch.

A Lightning `fit` of `kit.pretrain.ShapesVLMPretraining` on `kit.vlm.VLMTaskData`; every
Lightning and recipe option works as with `fit` (`--trainer.max_steps=...`, `-c overlay.yaml`).
The data's render size is the model's image size. The trained model and its processor are saved
to the recipe's `model.export_to`.
"""

from __future__ import annotations

from kit.runner import run_pretraining

HELP = "train the shapes VLM from scratch: --config recipes/vlm/shapes_vlm.yaml (Lightning fit options)"


def main(argv: list[str]) -> int:
    return run_pretraining(argv)
