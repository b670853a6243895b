"""Callbacks that log what a researcher looks at: sample grids with their prompts and LAP's layer weights,
and the writer of `python -m kit predict`'s images.

The loggers write to the run's TensorBoard logger (and the sample grid also as PNG files beside
the logs, so a run can be inspected without TensorBoard).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure  # figures without pyplot: the kit never switches a notebook's backend
from PIL import Image
from torchvision.utils import make_grid

from kit.images import tensor_to_image


def sharded(trainer: L.Trainer) -> bool:
    """Whether the strategy shards parameters (FSDP, model parallel, DeepSpeed): generating then needs every rank
    inside the wrapped model's forward, which the sampling callbacks do not do, so they skip (and say so once)."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    return isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy, DeepSpeedStrategy))


def skip_when_sharded(callback: L.Callback, trainer: L.Trainer) -> bool:
    """True (with one warning per callback) when `trainer` shards parameters; see `sharded`."""
    if not sharded(trainer):
        return False
    if not getattr(callback, "_warned_sharded", False):
        callback._warned_sharded = True
        rank_zero_warn(
            f"{type(callback).__name__} is off under {type(trainer.strategy).__name__}: parameters are sharded across ranks, so "
            "sampling inside the training loop would need every rank; sample or evaluate the saved checkpoint instead "
            "(python -m kit sample / evaluate --ckpt ...; recipes/scale/fsdp.yaml saves full checkpoints)"
        )
    return True


def _tensorboard(trainer: L.Trainer):
    """The SummaryWriter of the trainer's TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            return logger.experiment
    return None


def prompt_figure(images: torch.Tensor, prompts: list[str], columns: int = 4) -> Figure:
    """A matplotlib figure of images `(B, C, H, W)` in [-1, 1], each titled with its prompt."""
    rows = (len(prompts) + columns - 1) // columns
    fig = Figure(figsize=(2.4 * columns, 3.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, prompt in zip(axes.flat, images, prompts, strict=False):
        ax.imshow(tensor_to_image(image), interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(prompt, 34)), fontsize=6, loc="left")
    fig.tight_layout()
    return fig


class SampleGrid(L.Callback):
    """Every `every_n_steps` (and at the end of training) sample fixed prompts and log them.

    Logs an image grid (`samples/grid`), a figure with each prompt above its image
    (`samples/with_prompts`) and writes the figure to `<log_dir>/samples/step_XXXXXX.png`. With a
    datamodule of edits (one with `preview_items`), each sample comes after its source and its
    target: source | target | sample.

    Args:
        every_n_steps: optimizer steps between grids.
        num_prompts: how many prompts (taken from the datamodule's `preview_prompts` when `prompts` is None).
        prompts: explicit prompts to sample.
        guidance_scale: CFG scale (the module's default when None).
        num_steps: sampler steps (the sampler's own when None).
        seed: noise seed, fixed so grids are comparable across steps and runs.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_prompts: int = 8,
        prompts: list[str] | None = None,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        seed: int = 0,
    ) -> None:
        self.every_n_steps = every_n_steps
        self.num_prompts = num_prompts
        self.prompts = prompts
        self.guidance_scale = guidance_scale
        self.num_steps = num_steps
        self.seed = seed
        self._last_step = -1

    def _prompts(self, trainer: L.Trainer) -> list[str]:
        if self.prompts is None:
            self.prompts = trainer.datamodule.preview_prompts(self.num_prompts)
        return self.prompts

    def _edits(self, trainer: L.Trainer) -> list[dict] | None:
        """The datamodule's preview edits (`{prompt, references, image}`), when it has them and no prompts were given."""
        preview = getattr(trainer.datamodule, "preview_items", None)
        return preview(self.num_prompts) if self.prompts is None and preview is not None else None

    def log_grid(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        step = trainer.global_step
        if skip_when_sharded(self, trainer):
            return
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks, before rank 0 goes on alone
        if step == self._last_step or not trainer.is_global_zero:
            return
        self._last_step = step
        edits = self._edits(trainer)
        prompts = [e["prompt"] for e in edits] if edits else self._prompts(trainer)
        references = [e["references"] for e in edits] if edits else None
        images = module.generate(prompts, references=references, guidance_scale=self.guidance_scale, num_steps=self.num_steps, seed=self.seed).cpu()
        if edits:  # source | target | sample, three columns a row
            blank = torch.zeros_like(images[0])
            sources = [e["references"][0].to(images.dtype) if e["references"] else blank for e in edits]
            images = torch.stack([x for trio in zip(sources, [e["image"] for e in edits], images) for x in trio])
            prompts = [x for p in prompts for x in ("source", "target", p)]
        fig = prompt_figure(images, prompts, columns=3 if edits else 4)
        if log_dir is not None:
            out = Path(log_dir) / "samples"
            out.mkdir(parents=True, exist_ok=True)
            fig.savefig(out / f"step_{step:06d}.png", dpi=100)
        writer = _tensorboard(trainer)
        if writer is not None:
            writer.add_image("samples/grid", make_grid((images + 1) / 2, nrow=3 if edits else 4, padding=1), step)
            writer.add_figure("samples/with_prompts", fig, step)
            writer.add_text("samples/prompts", "\n\n".join(f"{i}. {p}" for i, p in enumerate(prompts)), step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self.log_grid(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.log_grid(trainer, module)


class LayerWeightLogger(L.Callback):
    """Log the task's per-layer weights (`DiffusionTask.layer_weights()`: a fusion head's) as scalars, a histogram
    and a bar plot. Tasks and heads without a notion of layer weights are skipped silently.

    Args:
        every_n_steps: optimizer steps between logs.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        self.every_n_steps = every_n_steps

    def log_weights(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if skip_when_sharded(self, trainer):  # a rank holds a shard of the weights, not the weights
            return
        found = module.layer_weights()
        writer = _tensorboard(trainer)
        if found is None or writer is None or not trainer.is_global_zero:
            return
        weights = found.weights.float().cpu()
        if not torch.isfinite(weights).all():  # a diverged run: nothing meaningful to plot (and TensorBoard's histogram would fail)
            return
        taps = found.layers
        step = trainer.global_step
        for layer, w in zip(taps, weights.tolist(), strict=False):
            writer.add_scalar(f"fusion/layer_weight/L{layer:02d}", w, step)
        writer.add_histogram("fusion/layer_weights", weights, step)
        fig = Figure(figsize=(max(3.0, 0.35 * len(taps)), 2.4))
        ax = fig.subplots()
        ax.bar([str(t) for t in taps], weights.numpy(), color=["tab:blue" if w >= 0 else "tab:red" for w in weights])
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("encoder layer")
        ax.set_ylabel("weight")
        ax.set_title(f"{found.source} layer weights, step {step}", fontsize=8)
        fig.tight_layout()
        writer.add_figure("fusion/layer_weights_plot", fig, step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.log_weights(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.log_weights(trainer, module)


class SuiteEvaluation(L.Callback):
    """Every `every_n_steps` (and at the end of training) score the model on a prompt suite with the oracle.

    Logs `eval/overall`, `eval/<category>` and `eval/dpg` (see `kit.analysis.scoring`).

    Args:
        every_n_steps: optimizer steps between evaluations.
        per_category: prompts per category (the first ones of the suite), to keep it quick.
        images_per_prompt: images generated per prompt.
        suite: name of the shipped prompt suite.
        version: suite version.
        guidance_scale: CFG scale (the module's default when None).
        num_steps: sampler steps (the sampler's own when None).
    """

    def __init__(
        self,
        every_n_steps: int = 1000,
        per_category: int | None = 10,
        images_per_prompt: int = 1,
        suite: str = "t2i",
        version: int = 1,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
    ) -> None:
        from kit.analysis import subset
        from kit.world.suites import load_suite

        self.every_n_steps = every_n_steps
        self.entries = subset(load_suite(suite, version), per_category)
        self.images_per_prompt = images_per_prompt
        self.generate_kwargs = {"guidance_scale": guidance_scale, "num_steps": num_steps}
        self._last_step = -1

    def evaluate(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from kit.analysis import evaluate_module

        if trainer.global_step == self._last_step or skip_when_sharded(self, trainer):
            return
        self._last_step = trainer.global_step
        metrics = None
        if trainer.is_global_zero:  # rank 0 generates and scores; the others wait at the broadcast below
            results = evaluate_module(module, self.entries, self.images_per_prompt, **self.generate_kwargs)
            metrics = {"eval/overall": results["overall"], **{f"eval/{k}": v for k, v in results["categories"].items()}}
            if results["dpg"]["score"] is not None:
                metrics["eval/dpg"] = results["dpg"]["score"]
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        metrics = trainer.strategy.broadcast(metrics, src=0)  # every rank holds the same scores (a monitored checkpoint agrees)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})  # for RunSummary and ModelCheckpoint

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.evaluate(trainer, module)


class PredictionWriter(BasePredictionWriter):
    """Writes what `python -m kit predict` generates: one PNG per image and `prompts.jsonl` (file, prompt).

    Args:
        output_dir: the folder; None writes to `predictions/` in the run's log folder (or the trainer's
            root folder without a logger).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.folder: Path | None = None
        self.written = 0

    def on_predict_start(self, trainer, pl_module) -> None:
        """Resolve the folder on every rank (`trainer.log_dir` is a collective under DDP)."""
        self.folder = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "predictions"
        self.written = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        """prediction `(B, C, H, W)` in [-1, 1] for `batch.prompts` -> PNG files, named by batch and position."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        rank = f"-rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        with (folder / f"prompts{rank}.jsonl").open("a") as index:
            for i, (image, prompt) in enumerate(zip(prediction, batch.prompts, strict=True)):
                name = f"{dataloader_idx}-{batch_idx:05d}-{i:03d}{rank}.png"
                Image.fromarray(tensor_to_image(image)).save(folder / name)
                index.write(json.dumps({"file": name, "prompt": prompt}) + "\n")
                self.written += 1

    def on_predict_end(self, trainer, pl_module) -> None:
        total = int(trainer.strategy.reduce(torch.tensor(float(self.written), device=pl_module.device), reduce_op="sum"))  # every rank joins
        if trainer.is_global_zero:
            print(f"predict: {total} images -> {self.folder}")
