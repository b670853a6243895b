"""Parts and helpers used only by the tests; the parts are importable by class_path from recipes built in tests."""

from __future__ import annotations

import torch

from kit.fusion.base import FusionHead

TINY_LAYERS, TINY_HIDDEN = 3, 48
"""Size of the tiny family models built by the `tiny_family` fixture (not the defaults, so sizes are really read)."""


class PooledOnlyHead(FusionHead):
    """A head that provides only a pooled vector (no tokens)."""

    provides = frozenset({"pooled"})

    def forward(self, enc):
        raise NotImplementedError("never called: the pairing is refused at build time")


def remote_code_model_folder(tmp_path):
    """A copy of the random shapes VLM whose config maps every Auto class to a local Python file that,
    if ever imported, leaves a marker file. Returns `(folder, marker)`."""
    import json
    import shutil

    from kit.encoders import resolve_model_path

    folder = tmp_path / "remote_code_model"
    shutil.copytree(resolve_model_path("kit:shapes-vlm-random"), folder)
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import Qwen2VLForConditionalGeneration as Evil\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Evil", "AutoModelForImageTextToText": "evil.Evil", "AutoModelForCausalLM": "evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def fit_losses(repo, tmp_path, *extra, overlays: tuple[str, ...] = ()) -> tuple[list[float], torch.Tensor]:
    """Per-step losses of a 3-step smoke fit, and the fusion head's trained parameters (one flat vector).

    The parameters are the sharper witness: with a zero-initialised output layer the first
    loss cannot depend on the conditioning at all, but the head's updates always do."""
    from kit.cli import run_cli

    args = [
        "fit",
        "-c",
        str(repo / "recipes/lap.yaml"),
        *[a for overlay in overlays for a in ("-c", str(repo / overlay))],
        "-c",
        str(repo / "recipes/smoke.yaml"),
        "--trainer.max_steps=4",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    args += ["--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0", *extra]
    losses: list[float] = []

    import lightning as L

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    cli = run_cli(args, run=False)
    cli.trainer.callbacks.append(Record())
    cli.trainer.fit(cli.model, cli.datamodule)
    return losses, torch.cat([p.detach().flatten() for p in cli.model.fusion.parameters()])
