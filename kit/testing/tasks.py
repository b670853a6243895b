"""The contract check for tasks, importable from tests and notebooks:

    from kit.testing import check_task
    check_task(MyTask, tmp_path)       # raises AssertionError with the broken rule

It trains a tiny instance of the task through the CLI, exactly as a user would (`cls.tiny_recipe()`, two
steps), and checks what the rest of the kit relies on (`kit.tasks.base`'s module docstring):

- the declarations: `capabilities` are `Capability`s; `object_arguments`, `weight_file_arguments` and
  `model_arguments` name constructor arguments; `parts()` are the task's own submodules; `layer_weights()`
  is None or one weight per named layer;
- save -> load: `kit.loading.load_checkpoint` of the checkpoint the fit wrote rebuilds the task, and it
  draws the same samples as the task in memory;
- `generate`: one `(3, H, W)` image per prompt in [-1, 1], the same for a seed, another for another seed;
- refusals: a bare string, an empty list, zero steps, and references for a task that reads none;
- `evaluate`: the figures `kit evaluate` writes, which the task's `summarize` can print.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import kit
from kit.analysis import subset
from kit.loading import load_checkpoint
from kit.runner import accepted_arguments, run_cli
from kit.tasks.base import DiffusionTask
from kit.tasks.contract import Capability, EvaluationSettings, LayerWeights
from kit.world.suites import load_suite

REPO = Path(kit.__file__).resolve().parent.parent
"""The checkout whose recipes a task's `tiny_recipe()` names."""

PROMPTS = ["a red circle in the top left", "two blue squares"]


def _resolved(args: list[str]) -> list[str]:
    """`tiny_recipe()`'s arguments with recipe files found in the checkout whatever the working directory."""
    return [str(REPO / a) if a.endswith(".yaml") and not Path(a).is_absolute() and (REPO / a).is_file() else a for a in args]


def _raises(error: type[Exception], call, what: str) -> None:
    try:
        call()
    except error:
        return
    except Exception as e:  # the right refusal matters: a crash deeper in is not one
        raise AssertionError(f"{what}: raised {type(e).__name__} ({e}), expected {error.__name__}") from e
    raise AssertionError(f"{what}: accepted, expected {error.__name__}")


def check_declarations(cls: type[DiffusionTask]) -> None:
    """The class-level contract: what a task declares names its own constructor arguments and capabilities."""
    assert issubclass(cls, DiffusionTask), f"{cls.__name__} does not subclass DiffusionTask"
    assert isinstance(cls.capabilities, frozenset) and all(isinstance(c, Capability) for c in cls.capabilities), "capabilities: a frozenset of Capability"
    assert (Capability.TEXT_TO_IMAGE in cls.capabilities) == (cls.draw is not DiffusionTask.draw), (
        "a task that draws images declares TEXT_TO_IMAGE, and only one"
    )
    arguments = set(accepted_arguments(cls))
    for name in ("object_arguments", "weight_file_arguments", "model_arguments"):
        unknown = set(getattr(cls, name)) - arguments
        assert not unknown, f"{cls.__name__}.{name} names {sorted(unknown)}, which its constructor does not take"
    assert isinstance(cls.evaluation, str) and cls.evaluation, "evaluation: the name of what evaluate() measures"
    assert cls.tiny_recipe is not DiffusionTask.tiny_recipe, f"{cls.__name__} provides no tiny_recipe()"


def check_generate(task: DiffusionTask, image_size: int) -> torch.Tensor:
    """`generate`'s output contract and refusals; returns the images of `PROMPTS` at seed 3."""
    images = task.generate(PROMPTS, num_steps=2, seed=3)
    assert images.shape == (len(PROMPTS), 3, image_size, image_size), f"generate: (B, 3, H, W), got {tuple(images.shape)}"
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1, "generate: finite, in [-1, 1]"
    torch.testing.assert_close(task.generate(PROMPTS, num_steps=2, seed=3), images, msg="generate: the same seed draws the same images")
    assert not torch.equal(task.generate(PROMPTS, num_steps=2, seed=4), images), "generate: another seed draws other images"
    _raises(TypeError, lambda: task.generate(PROMPTS[0], num_steps=2), "generate of a bare string")
    _raises(ValueError, lambda: task.generate([], num_steps=2), "generate of no prompts")
    _raises(ValueError, lambda: task.generate(PROMPTS, num_steps=0), "generate with 0 steps")
    if Capability.REFERENCES not in task.capabilities:
        picture = torch.zeros(3, image_size, image_size)
        _raises(ValueError, lambda: task.generate(PROMPTS, references=[[picture]] * len(PROMPTS), num_steps=2), "references for a task that reads none")
    return images


def check_parts(task: DiffusionTask) -> None:
    """`parts()` are the task's own submodules; `layer_weights()` is None or one weight per layer."""
    own = {id(m) for m in task.modules()}
    for name, part in task.parts().items():
        assert isinstance(part, nn.Module) and id(part) in own, f"parts()[{name!r}] is not a submodule of the task"
    found = task.layer_weights()
    assert found is None or (isinstance(found, LayerWeights) and len(found.layers) == found.weights.numel()), "layer_weights(): one weight per layer"


def check_task(cls: type[DiffusionTask], workdir: str | Path, *, extra_args: tuple[str, ...] = ()) -> DiffusionTask:
    """Train `cls.tiny_recipe()` for two steps in `workdir` and check the task contract (module docstring).
    Returns the task loaded back from its checkpoint."""
    check_declarations(cls)
    workdir = Path(workdir)
    args = [
        "fit",
        *_resolved(cls.tiny_recipe()),
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--trainer.callbacks=[]",
        f"--trainer.logger.init_args.save_dir={workdir}",
        *extra_args,
    ]
    cli = run_cli(args)
    trained = cli.model
    assert type(trained) is cls, f"tiny_recipe() trains a {type(trained).__name__}, not a {cls.__name__}"
    assert trained.global_step == 2, f"the tiny fit ran {trained.global_step} steps, not 2"
    size = int(cli.datamodule.image_size)
    check_parts(trained)
    images = check_generate(trained, size)
    checkpoints = sorted(workdir.glob("**/*.ckpt"))
    assert checkpoints, "the fit wrote no checkpoint"
    loaded = load_checkpoint(checkpoints[-1])
    assert type(loaded) is cls, f"the checkpoint loads as {type(loaded).__name__}"
    torch.testing.assert_close(loaded.generate(PROMPTS, num_steps=2, seed=3), images, msg="save -> load: the loaded task draws other samples")
    entries = subset(load_suite("t2i"), 1)[:3]
    results = loaded.evaluate(entries, EvaluationSettings(batch_size=8, num_steps=1, num_scenes=2))
    assert isinstance(results, dict) and results, "evaluate: a dict of figures"
    assert isinstance(loaded.summarize(results), str), "summarize: one line of evaluate's figures"
    return loaded
