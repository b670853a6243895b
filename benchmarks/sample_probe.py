"""Train a recipe for N steps, then sample the first 6 prompts of each t2i_v1 category and show what the oracle reads.

    python benchmarks/sample_probe.py 1000 /tmp/out recipes/lap.yaml recipes/levers/fast.yaml recipes/diagnostics/scene_tokens.yaml

Writes OUT.png (a grid of 24 samples with their prompts) and OUT.pt (the weights), prints each
prompt with the objects the oracle reads and the fraction of prompts satisfied, then the loss on
a training batch at four times with the right, a shuffled and the null prompt. Arguments after
the output path are recipe files, then `--key=value` overrides. The pictures in docs/img/ come
from it (commands in docs/efficiency.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.analysis.evaluate import generate_suite, subset  # noqa: E402
from kit.callbacks.monitors import prompt_figure  # noqa: E402
from kit.cli import run_cli  # noqa: E402
from kit.world.oracle import Oracle  # noqa: E402
from kit.world.parser import parse_caption  # noqa: E402
from kit.world.suites import load_suite  # noqa: E402


def main(argv: list[str]) -> int:
    steps, out, rest = int(argv[0]), argv[1], argv[2:]
    args = [a for c in rest if not c.startswith("--") for a in ("-c", c)] + [c for c in rest if c.startswith("--")]
    args += [
        f"--trainer.max_steps={steps}",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        "--trainer.limit_val_batches=0",
        "--trainer.logger=false",
    ]
    cli = run_cli(args, run=False)
    started = time.time()
    cli.trainer.fit(cli.model, cli.datamodule)
    print(f"trained {steps} steps in {time.time() - started:.0f} s")
    module = cli.model
    torch.save(module.state_dict(), out + ".pt")
    entries = subset(load_suite(), 6)
    images = generate_suite(module, entries, 1, num_steps=20)
    fig = prompt_figure(torch.stack([i[0] for i in images])[:24], [e.prompt for e in entries][:24], columns=6)
    fig.savefig(out + ".png", dpi=80)
    oracle, satisfied = Oracle(), 0
    for entry, imgs in zip(entries, images):
        scene = oracle.read(imgs[0])
        satisfied += parse_caption(entry.prompt).satisfied_by(scene)
        print(f"{entry.category[:10]:10} | {entry.prompt[:60]} -> {[(o.size, o.colour, o.shape, o.row, o.col) for o in scene.objects]}")
    print(f"satisfied {satisfied / len(entries):.3f} of {len(entries)} prompts")
    module.eval()
    batch = next(iter(cli.datamodule.train_dataloader()))
    x0, prompts = batch.images, batch.prompts
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in (0.3, 0.6, 0.8, 0.95):
            tt = torch.full((x0.shape[0],), t)
            losses = [
                float(module.objective.loss(module.backbone, x0, cond, t=tt, noise=noise)["loss"])
                for cond in (module.condition(prompts), module.condition(prompts[1:] + prompts[:1]), module.fusion.null_conditioning(len(prompts)))
            ]
            print(f"t={t}: loss right {losses[0]:.4f} shuffled {losses[1]:.4f} null {losses[2]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
