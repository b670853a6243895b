"""`python -m kit describe --config RECIPE [...]`: parameters and forward GMACs of the configured model, per part.

    python -m kit describe --config recipes/lap.yaml
    python -m kit describe --config recipes/lap.yaml -c recipes/backbones/dit_xl2.yaml \\
        --image-size 32 --channels 4 --class-conditional 1000     # DiT-XL/2, 256 px latents, ImageNet labels

With `--class-conditional N` the backbone is described alone, conditioned on a DiT-style
label table of N classes (plus the null class) instead of the encoder and fusion head,
and built on the meta device (no memory, any size).
"""

from __future__ import annotations

from importlib import import_module

import torch

from kit.analysis.describe import PartReport, class_conditioning, describe_backbone, describe_module, table
from kit.verbs.parsing import VerbParser

HELP = "parameters and forward GMACs of a recipe's model, per part: --config RECIPE [--class-conditional N]"


def main(argv: list[str]) -> int:
    p = VerbParser(prog="python -m kit describe", description="Parameters and forward GMACs (multiply-adds) of a recipe's model, per part.")
    p.add_argument("-c", "--config", type=str, action="append", required=True, help="recipe files, composed left to right")
    p.add_argument("--image-size", type=int | None, default=None, help="input side (pixels or latent cells) instead of the data's")
    p.add_argument("--channels", type=int | None, default=None, help="input channels instead of the data's (4 for SD-VAE latents)")
    p.add_argument(
        "--class-conditional", type=int | None, default=None, help="describe the backbone with an N-class label table instead of the encoder and head"
    )
    p.add_argument(
        "--prompt", type=str, default="a large red circle in the top left and a small blue square on the right", help="prompt for the encoder's count"
    )
    args = p.parse_args(argv)

    from kit.runner import run_cli

    cli_args = ["fit", *[a for c in args.config for a in ("-c", c)], "--trainer.logger=false"]
    if args.image_size:
        cli_args.append(f"--data.init_args.image_size={args.image_size}")
    if args.class_conditional is None:
        module = run_cli(cli_args, run=False).model
        if args.channels:
            raise SystemExit("--channels needs --class-conditional (the shapes data are RGB)")
        print(table(describe_module(module, args.prompt)))
        return 0
    print(table([describe_class_conditional(cli_args, args.class_conditional, args.image_size, args.channels or 3)]))
    return 0


def describe_class_conditional(cli_args: list[str], num_classes: int, image_size: int | None, channels: int) -> PartReport:
    """The recipe's backbone, built on the meta device, conditioned on an N-class label table."""
    config = _parse_only(cli_args)
    backbone_cfg = config.model.init_args.backbone
    module_path, name = backbone_cfg.class_path.rsplit(".", 1)
    cls = getattr(import_module(module_path), name)
    with torch.device("meta"):
        backbone = cls(channels, image_size or config.data.init_args.image_size, **vars(backbone_cfg.init_args))
        labels, cond = class_conditioning(num_classes, backbone.cond_dim, "meta")
    report = describe_backbone(backbone, cond)
    report.params += labels.weight.numel()
    report.trainable += labels.weight.numel()
    return report


def _parse_only(cli_args: list[str]):
    """The resolved config of a recipe without instantiating anything."""
    import lightning as L

    from kit.runner import KitArgumentParser, KitCLI

    class ParseOnly(KitCLI):
        def instantiate_classes(self) -> None:  # parse, link nothing, build nothing
            pass

    cli = ParseOnly(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=KitArgumentParser,
        args=cli_args[1:],
        run=False,
    )
    return cli.config
