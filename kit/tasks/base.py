"""`DiffusionTask`: the LightningModule that every diffusion task of the kit subclasses.

A task (text-to-image, editing, a joint image-text model) decides what its networks are, what a
batch means and how to sample. What every such task needs is here, once:

- the recorded config: under the CLI the parsed recipe (plain data that rebuilds every part on
  load), built by hand the plain settings only;
- the objective and the sampler (rectified flow and Euler by default);
- parameter groups (weight decay on matrices only, named so the learning-rate monitor shows
  `decayed` / `not_decayed`), the optimizer and the per-step schedule;
- EMA of the trainable weights (never of a frozen encoder), swapped in for validation, sampling
  and checkpoints' `ema` entry, and moved with the module by `.to()`;
- `torch.compile` of the denoiser, in place (state-dict keys do not change);
- checks before any step: no `ddp_spawn`, a feature cache built by this task's encoder;
- the random stream of each training batch as a function of (seed, step, micro-batch, rank);
- a run that stops, weights intact, at the first non-finite gradient;
- `sampling()`: eval mode, no gradients, EMA weights, and the previous mode restored.

A subclass builds its networks in `__init__` after `super().__init__(...)`, then calls
`finish_building(denoiser)`; it implements `training_step` (and usually `validation_step`), and registers
itself in `TASKS` so checkpoints of it load by its recorded class path (`kit.loading.load_checkpoint`).

The task contract. A task says what it is here, on its class, and verbs, callbacks and the checkpoint
reader ask it rather than test its type:

- `object_arguments`, `weight_file_arguments`, `model_arguments`: which constructor arguments are parts,
  which name weight files (read once when built), which decide what the weights mean (a resume that
  changes them is refused);
- `capabilities`: a frozenset of `Capability` (what `generate` and `kit sample` may ask of it);
- `generate(prompts, *, references, guidance_scale, num_steps, seed)` -> images `(B, 3, H, W)` in [-1, 1]: the
  base checks the arguments and calls the task's `draw`;
- `evaluation` and `evaluate(entries, EvaluationSettings)`: the name of its evaluation and the figures `kit
  evaluate` writes;
- `layer_weights()`: per-layer weights to log (`LayerWeightLogger`), or None; `parts()`: its named networks;
- `tiny_recipe()`: command-line arguments that train a tiny instance of it in seconds, with which
  `kit.testing.check_task` checks every registered task.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from kit.analysis.evaluate import generate_suite
from kit.analysis.scoring import score_images
from kit.checkpoint import read_checkpoint
from kit.compat import attached_trainer, ddp_ignore, start_method, under_cli
from kit.diffusion import EulerSampler, Objective, RectifiedFlow, Sampler
from kit.encoders.cache import check_fingerprint
from kit.registry import Registry
from kit.tasks.contract import Capability, EvaluationSettings, LayerWeights
from kit.training.ema import EMA
from kit.types import Batch, References
from kit.world.suites import SuiteEntry

OptimizerFactory = Callable[[list], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]


def _check_optimizer(factory: OptimizerFactory) -> None:
    """Build the optimizer once on a stand-in parameter: a bad setting fails here, before any run folder.
    Its own `weight_decay` is refused (the task's applies, to matrices only), and a zero rate warned about."""
    probe = factory([{"params": [nn.Parameter(torch.zeros(1))]}])
    optimizer_class = type(probe)
    declared = inspect.signature(optimizer_class.__init__).parameters.get("weight_decay")
    given = probe.defaults.get("weight_decay")
    if declared is not None and declared.default is not inspect.Parameter.empty and given != declared.default:
        raise ValueError(
            f"optimizer weight_decay={given} would be overridden: the task applies its own weight decay to matrices only "
            f"(none to norms, biases and embeddings); set model.init_args.weight_decay={given} instead and drop it from the optimizer"
        )
    if any(group.get("lr", 1.0) == 0 for group in probe.param_groups):
        warnings.warn("the learning rate is 0: training will not change the weights", stacklevel=3)


class DiffusionTask(L.LightningModule):
    """Base of the kit's diffusion tasks (see the module docstring for what it owns).

    Args:
        objective: the training objective (rectified flow when None).
        sampler: the inference sampler (50-step Euler when None).
        optimizer: builds the optimizer from named parameter groups (AdamW, lr 1e-4, when None). Leave
            its `weight_decay` unset: the task's `weight_decay` is the one that applies.
        lr_scheduler: builds a per-step schedule from the optimizer and the run's total steps.
        weight_decay: weight decay of matrices (norms, biases and embeddings get none).
        ema_decay: keep an exponential moving average of the trainable weights with this decay
            and use it for validation and sampling (0 turns it off).
        compile: compile the denoiser with `torch.compile` (in place: state-dict keys do not change).
        init_from: start from the trainable weights of this checkpoint (weights only: a fresh optimizer,
            schedule and step count), e.g. a text-to-image checkpoint to fine-tune for editing. Every
            trainable weight must be in it, with its shape (or one `adapt_initial_weight` accepts).
    """

    object_arguments: tuple[str, ...] = ("objective", "sampler", "optimizer", "lr_scheduler")
    """Constructor arguments that are objects: recorded under the CLI (as config), left out when built by hand."""

    no_decay_names: tuple[str, ...] = ("null_tokens", "cond_type")
    """Matrices that are embeddings (parameter names containing these) get no weight decay."""

    weight_file_arguments: tuple[str, ...] = ("init_from",)
    """Constructor arguments that name weight files: read as data when the task is built, then held in its own
    state, so a checkpoint never re-reads them (they are None when it is rebuilt) and never runs them as code."""

    model_arguments: tuple[str, ...] = ("encoder", "objective", "autoencoder", "image_size", "in_channels")
    """Settings that decide what the weights mean: resuming a checkpoint under a recipe that changes one is refused."""

    capabilities: frozenset[Capability] = frozenset()
    """What the task can be asked to do; verbs and callbacks read this, never the task's type."""

    evaluation: str = "t2i"
    """The name of what `evaluate` measures (`kit evaluate --task NAME` checks it)."""

    def __init__(
        self,
        *,
        objective: Objective | None = None,
        sampler: Sampler | None = None,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        weight_decay: float = 0.0,
        ema_decay: float = 0.0,
        compile: bool = False,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        # Under the CLI, Lightning hands save_hyperparameters the parsed config (plain data that
        # rebuilds every part on load); built by hand, the parts are objects and stay out.
        self.save_hyperparameters(ignore=None if under_cli() else list(self.object_arguments))
        self.objective = objective or RectifiedFlow()
        self.sampler = sampler or EulerSampler()
        if optimizer is not None:
            _check_optimizer(optimizer)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.weight_decay = weight_decay
        self._ema_decay, self._compile, self._init_from = ema_decay, compile, init_from  # read by finish_building
        self.ema: EMA | None = None
        self.skipped_images = 0
        self.stopped: str | None = None  # why training stopped early (a non-finite gradient), for the CLI

    def finish_building(self, denoiser: nn.Module) -> None:
        """Call at the end of a subclass's `__init__`, once every trainable network exists: starts the
        EMA over the trainable weights (after `init_from`'s weights are in) and compiles `denoiser` when asked."""
        if self._init_from:
            self.load_initial_weights(self._init_from)
        self.ema = EMA(self.named_parameters(), self._ema_decay) if self._ema_decay > 0 else None
        if self.ema is not None:  # DDP would broadcast the averages from rank 0 at every forward: each rank keeps its own (equal) ones
            ddp_ignore(self, [f"ema.{name}" for name, _ in self.ema.named_buffers()])
        if self._compile:
            denoiser.compile()

    def load_initial_weights(self, path: str) -> None:
        """Copy the state of the checkpoint at `path` (read as data, weights only) into this task: every
        entry of the task's state dict (the trainable weights, and buffers such as a head's feature
        statistics; never the frozen encoder), the EMA averages in place of the raw weights when the
        checkpoint kept them (what it sampled with). An entry missing from it, or of a shape
        `adapt_initial_weight` does not accept, is a one-line error naming it."""
        checkpoint = read_checkpoint(path)
        saved, averaged = checkpoint["state_dict"], checkpoint.get("ema") or {}
        own = self.state_dict(keep_vars=True)
        missing = [name for name in own if name not in saved]
        if missing:
            raise ValueError(
                f"init_from {path}: the checkpoint lacks {len(missing)} of this task's weights ({', '.join(missing[:3])}...); is it a checkpoint of the same parts?"
            )
        with torch.no_grad():
            for name, target in own.items():
                value = averaged.get(f"shadow.{name}", saved[name]).to(target.dtype)
                if value.shape != target.shape:
                    value = self.adapt_initial_weight(name, value, target)
                    if value is None:
                        raise ValueError(f"init_from {path}: {name} has shape {tuple(saved[name].shape)} there and {tuple(target.shape)} here")
                target.copy_(value)

    def adapt_initial_weight(self, name: str, saved: Tensor, target: Tensor) -> Tensor | None:
        """`init_from`'s entry `name`, whose shape differs from `target`'s, made to fit it (None: it cannot)."""
        return None

    # ----------------------------------------------------------------- the contract
    @classmethod
    def tiny_recipe(cls) -> list[str]:
        """Command-line arguments (recipes and overrides) that `fit` a tiny instance of this task in seconds on a CPU,
        for `kit.testing.check_task`; a registered task must provide them."""
        raise NotImplementedError(f"{cls.__name__} provides no tiny_recipe(); kit.testing.check_task needs one")

    def parts(self) -> dict[str, nn.Module]:
        """The task's named networks (the frozen ones included), for parameter counts and reports."""
        return {}

    def layer_weights(self) -> LayerWeights | None:
        """Per-layer weights worth logging (a fusion head's over the encoder's layers), or None."""
        return None

    def check_generate_arguments(self, prompts: Sequence[str], references: References | None, num_steps: int | None) -> None:
        """Refuse what `generate` cannot honour, with one line: prompts that are not a non-empty list of strings,
        references for a task without `Capability.REFERENCES` or not one list per prompt, a step count below 1."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(
                f"prompts must be a list of strings, got {type(prompts).__name__}{' (wrap one prompt in a list)' if isinstance(prompts, str) else ''}"
            )
        if not prompts:
            raise ValueError("no prompts: pass at least one")
        if references is not None and any(references):
            if Capability.REFERENCES not in self.capabilities:
                raise ValueError(f"{type(self).__name__} takes no reference images (its capabilities: {', '.join(sorted(self.capabilities)) or 'none'})")
            if len(references) != len(prompts):
                raise ValueError(f"{len(references)} reference lists for {len(prompts)} prompts: pass one list per prompt")
        if num_steps is not None and num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")

    def generate(
        self,
        prompts: list[str],
        *,
        references: References | None = None,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        seed: int = 0,
    ) -> Tensor:
        """Sample one image per prompt -> `(B, 3, H, W)` in [-1, 1] (refusing, with one line, what `check_generate_arguments`
        refuses), drawn by the task's `draw`.

        Args:
            prompts: the text prompts (or instructions).
            references: per prompt, the images it refers to (tasks with `Capability.REFERENCES`).
            guidance_scale: guidance scale (the task's default when None).
            num_steps: sampler steps (the sampler's own when None).
            seed: seed of the initial noise.
        """
        self.check_generate_arguments(prompts, references, num_steps)
        return self.draw(list(prompts), references, guidance_scale, num_steps, seed)

    def draw(self, prompts: list[str], references: References | None, guidance_scale: float | None, num_steps: int | None, seed: int) -> Tensor:
        """`generate`'s images, its arguments checked: what a task that generates implements."""
        raise NotImplementedError(f"{type(self).__name__} does not generate images")

    def evaluate(self, entries: Sequence[SuiteEntry], settings: EvaluationSettings | None = None) -> dict[str, Any]:
        """The figures `kit evaluate` writes for this task on a prompt suite's `entries`: text-to-image scored by the
        shapes oracle (`kit.analysis.scoring.score_images`) and the sampling settings used. A task that can do more
        (captioning) scores that too."""
        s = settings or EvaluationSettings()
        sampling = {"guidance_scale": s.guidance_scale, "num_steps": s.num_steps}
        images = generate_suite(self, entries, s.images_per_prompt, batch_size=s.batch_size, seed=s.seed, progress=s.progress, **sampling)
        return {**self.sampling_settings(s.guidance_scale, s.num_steps), **score_images(entries, images, progress=s.progress)}

    def sampling_settings(self, guidance_scale: float | None, num_steps: int | None) -> dict[str, Any]:
        """What `evaluate` records of how it sampled (a task adds its own settings)."""
        return {"guidance_scale": guidance_scale, "steps": num_steps or self.sampler.num_steps}

    @staticmethod
    def summarize(results: dict[str, Any]) -> str:
        """One line of `evaluate`'s results for the terminal."""
        cats = "  ".join(f"{k}={v:.3f}" for k, v in results["categories"].items())
        dpg = "-" if results["dpg"]["score"] is None else f"{results['dpg']['score']:.3f}"
        return f"overall {results['overall']:.3f}  dpg {dpg}  [{cats}]"

    # ----------------------------------------------------------------- EMA
    def averaged(self):
        """Context in which the trainable weights are the EMA ones (a no-op without EMA)."""
        return self.ema.swapped() if self.ema is not None else nullcontext()

    @contextmanager
    def sampling(self) -> Iterator[None]:
        """Eval mode, no gradients and the EMA weights inside; the previous mode and weights after."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), self.averaged():
                yield
        finally:
            self.train(was_training)

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimizer step, then the EMA update: before any callback (a checkpoint) sees the step."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update()

    def on_validation_epoch_start(self) -> None:
        self._val_weights = self.averaged()
        self._val_weights.__enter__()

    def on_validation_epoch_end(self) -> None:
        self._val_weights.__exit__(None, None, None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.checkpoint_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_checkpoint_state(checkpoint["ema"])

    # ----------------------------------------------------------------- checks and randomness
    def cache_encoder(self) -> nn.Module | None:
        """The encoder whose fingerprint a feature cache must carry (the task's `encoder`, if any)."""
        return getattr(self, "encoder", None)

    def setup(self, stage: str) -> None:
        """Refuse `ddp_spawn`, and a feature cache built by another encoder configuration, before any step runs."""
        trainer = attached_trainer(self)
        if trainer is not None and start_method(trainer.strategy) in ("spawn", "forkserver"):
            raise ValueError(
                "the ddp_spawn strategy is not supported: spawned workers receive the module by pickling, frozen Hugging Face "
                "encoder included; use --trainer.strategy=ddp, which starts every process from the recipe"
            )
        datamodule = getattr(trainer, "datamodule", None)
        cache, encoder = getattr(datamodule, "feature_cache", None), self.cache_encoder()
        if cache is not None and encoder is not None and encoder.fingerprint() is not None:
            check_fingerprint(cache.path, cache.fingerprint, encoder.fingerprint())  # CacheMismatchError with both fingerprints

    def step_generator(self, batch_idx: int = 0) -> torch.Generator:
        """The random stream of one training batch: a function of (run seed, step, micro-batch, rank) alone,
        so a resumed run draws the same times, noise and dropout as an uninterrupted one, DDP ranks draw
        different ones, and the micro-batches of one accumulated step differ."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        trainer = attached_trainer(self)
        rank = trainer.global_rank if trainer is not None else 0
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        micro = self.global_step * accumulate + batch_idx % accumulate
        key = ((seed * 1_000_003 + micro) * 65_537 + rank) % (2**63)
        return torch.Generator(device=self.device).manual_seed(key)

    def count_skipped(self, batch: Batch) -> bool:
        """Add up (and, from the first one on, log) the items the data could not decode; True when the
        batch has nothing left to train on (the step is then skipped)."""
        self.skipped_images += batch.skipped
        if self.skipped_images:
            self.log("data/skipped_images", float(self.skipped_images), reduce_fx="max")
        return len(batch) == 0

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Log the gradient norm; when it is not finite on any rank, skip this update, save the weights
        from before it and stop the run with a message naming the step (the weights never become NaN).
        Under fp16 loss scaling an overflowing step is left to the scaler, which skips it."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norm = (
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))
            if grads
            else torch.zeros((), device=self.device)
        )
        self.log("train/grad_norm", norm)
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return  # fp16 with a loss scaler: an overflow is the scaler's to skip, not a diverged run
        if not self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(norm)), all=False):
            return
        for p in self.parameters():
            p.grad = None  # the optimizer skips parameters without gradients: this step changes nothing
        step = self.global_step + 1
        ckpt = self.trainer.checkpoint_callback
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(self.trainer.default_root_dir) / "checkpoints"
        path = folder / f"nonfinite-step={step}.ckpt"
        self.trainer.save_checkpoint(path)
        loss = self.trainer.callback_metrics.get("train/loss")
        self.stopped = (
            f"training stopped at step {step}: the gradient norm is {float(norm)} (loss {float(loss) if loss is not None else 'unknown'}); "
            f"the weights from before this update are in {path}. Lower the learning rate or check the data."
        )
        self.trainer.should_stop = True
        rank_zero_warn(self.stopped)

    # ----------------------------------------------------------------- optimisation
    def trainable_parameter_groups(self) -> list[dict]:
        """Trainable parameters in two named groups: `decayed` (matrices) and `not_decayed` (the rest)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and not any(n in name for n in self.no_decay_names) else no_decay).append(p)
        return [
            {"name": "decayed", "params": decay, "weight_decay": self.weight_decay},
            {"name": "not_decayed", "params": no_decay, "weight_decay": 0.0},
        ]

    def configure_optimizers(self):
        groups = self.trainable_parameter_groups()
        optimizer = self.optimizer_factory(groups) if self.optimizer_factory else torch.optim.AdamW(groups, lr=1e-4)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


TASKS: Registry[DiffusionTask] = Registry("task", DiffusionTask)
"""The tasks a checkpoint may name: `load_checkpoint` rebuilds the recorded one, and only these."""
