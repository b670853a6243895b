"""Evaluating the joint image-text model (`kit.joint.task`) with the shapes world's parser and oracle.

- `t2i`: the prompt suite scored as for any text-to-image model, once per guidance variant: CFG for free at
  the model's scale, no guidance (scale 1), and the learned null text when the model was trained with one;
- `i2t`: renders of held-out scenes (never drawn in training) captioned by the model; a caption is *faithful* when
  it parses and all it says is true of the scene, *exact* when it is also a complete description (every object,
  each with shape, colour, size and place, and no other objects): the exact scene, read back from the text;
- `joint`: pairs sampled together; *consistent* (exact) when the caption is a complete description of the scene the
  oracle reads in the image, *faithful* when all it says is true of that scene;
- `anchors`: what trivial captioners score on the same metrics, so a partial figure can be read: one constant
  caption (the first held-out scene's) for every image, and the true captions paired with other scenes (rolled by
  one), both for captioning and for joint consistency. The exact metrics of both are about 0;
- `marginals`: diversity of unconditional samples, the share of distinct scenes (images, read by the oracle) and
  of distinct captions, and the share of captions that parse;
- `decoder`: the text codec alone, exact reconstruction `decode(encode(caption)) == caption` of held-out captions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from kit.analysis.evaluate import generate_suite
from kit.analysis.scoring import score_images
from kit.data.shapes import ShapesDataset
from kit.joint.sampling import Guidance, Mode
from kit.tasks.base import DiffusionTask
from kit.world.oracle import Oracle
from kit.world.parser import CaptionParseError, parse_caption
from kit.world.render import render
from kit.world.scene import Scene
from kit.world.spec import SceneSpec
from kit.world.suites import SuiteEntry


def read_caption(caption: str) -> SceneSpec | None:
    """The caption's spec, or None when the parser cannot read it."""
    try:
        return parse_caption(caption)
    except CaptionParseError:
        return None


def is_complete(spec: SceneSpec) -> bool:
    """Whether a spec pins one scene: exhaustive, every object single with shape, colour, size and place given."""
    return spec.exhaustive and all(o.count == 1 and len(o.attributes()) == 4 for o in spec.objects)


def caption_scores(captions: Sequence[str], scenes: Sequence[Scene]) -> dict[str, float]:
    """`parsed`, `faithful` and `exact` rates of captions against the scenes they describe."""
    specs = [read_caption(c) for c in captions]
    faithful = [s is not None and s.satisfied_by(scene) for s, scene in zip(specs, scenes)]
    exact = [f and is_complete(s) for f, s in zip(faithful, specs)]
    return {"parsed": float(np.mean([s is not None for s in specs])), "faithful": float(np.mean(faithful)), "exact": float(np.mean(exact))}


def anchor_scores(scenes: Sequence[Scene], truth: Sequence[str], image_size: int, oracle: Oracle) -> dict[str, dict[str, dict[str, float]]]:
    """What trivial captioners score (see the module docstring): `constant_caption` and `shuffled_pairs`, each with
    `i2t` and `joint` caption scores (`parsed`, `faithful`, `exact`)."""
    read = [oracle.read(render(scene, image_size)) for scene in scenes]  # what joint consistency compares with
    constant = [truth[0]] * len(truth)
    rolled = list(truth[1:]) + list(truth[:1])
    return {
        "constant_caption": {"i2t": caption_scores(constant, scenes), "joint": caption_scores(constant, read)},
        "shuffled_pairs": {"i2t": caption_scores(rolled, scenes), "joint": caption_scores(rolled, read)},
    }


class _Guided:
    """`module.generate` with a fixed guidance branch ('free' or 'null'), for `generate_suite`."""

    def __init__(self, module: DiffusionTask, guidance: Guidance) -> None:
        self.module, self.guidance = module, guidance

    def generate(self, prompts, *, guidance_scale=None, num_steps=None, seed=0):
        return self.module.sample(Mode.t2i, prompts=prompts, guidance=self.guidance, guidance_scale=guidance_scale, num_steps=num_steps, seed=seed).images


def _batched(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]


@torch.no_grad()
def evaluate_joint(
    module: DiffusionTask,
    entries: Sequence[SuiteEntry],
    *,
    images_per_prompt: int = 1,
    num_scenes: int = 128,
    guidance_scale: float | None = None,
    num_steps: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Every joint figure (see the module docstring) as a JSON-ready dict: `t2i_overall` (CFG for free at the
    model's scale), `i2t_exact`, `joint_consistency`, `decoder_exact`, and the detail under `t2i`, `i2t`,
    `joint`, `marginals`, `decoder` and `cfg` (t2i overall per guidance variant)."""
    scale = module.guidance_scale if guidance_scale is None else guidance_scale
    oracle = Oracle()
    size = module.image_size
    variants = {"free": (Guidance.free, scale), "none": (Guidance.free, 1.0)}
    if module.has_null_text:
        variants["null"] = (Guidance.null, scale)
    t2i = {}
    for name, (guidance, s) in variants.items():
        images = generate_suite(
            _Guided(module, guidance), entries, images_per_prompt, batch_size=batch_size, seed=seed, progress=progress, guidance_scale=s, num_steps=num_steps
        )
        t2i[name] = score_images(entries, images, oracle=oracle, progress=progress)
    test = ShapesDataset(num_scenes, split="held_out", seed=seed, image_size=size, caption_styles=["detailed"])
    scenes, truth = zip(*(test.scene_and_prompt(i) for i in range(num_scenes)))
    captions, joint_captions, joint_scenes, marginal_scenes, marginal_captions = [], [], [], [], []
    for k, (lo, hi) in enumerate(tqdm(_batched(num_scenes, batch_size), desc="i2t, joint, marginals", disable=not progress)):
        images = torch.stack([test[i]["image"] for i in range(lo, hi)])
        captions += module.sample(Mode.i2t, images=images, guidance_scale=guidance_scale, num_steps=num_steps, seed=seed + k).captions
        pair = module.sample(Mode.joint, num_samples=hi - lo, guidance_scale=guidance_scale, num_steps=num_steps, seed=seed + k)
        joint_captions += pair.captions
        joint_scenes += [oracle.read(image) for image in pair.images]
        marginal_scenes += [oracle.read(image) for image in module.sample(Mode.image, num_samples=hi - lo, num_steps=num_steps, seed=seed + k).images]
        marginal_captions += module.sample(Mode.text, num_samples=hi - lo, num_steps=num_steps, seed=seed + k).captions
    with module.sampling():
        latents = module.text_latents(list(truth))
        decoded = module.codec.decode(latents)
    decoder_exact = float(np.mean([a == b for a, b in zip(decoded, truth)]))
    i2t = caption_scores(captions, scenes)
    joint = caption_scores(joint_captions, joint_scenes)
    return {
        "t2i_overall": t2i["free"]["overall"],
        "i2t_exact": i2t["exact"],
        "joint_consistency": joint["exact"],
        "held_out": True,
        "anchors": anchor_scores(list(scenes), list(truth), size, oracle),
        "decoder_exact": decoder_exact,
        "cfg": {name: result["overall"] for name, result in t2i.items()} | {"scale": scale},
        "text_guidance_scale": module.text_guidance_scale if guidance_scale is None else guidance_scale,
        "t2i": t2i,
        "i2t": i2t | {"examples": [{"truth": t, "caption": c} for t, c in list(zip(truth, captions))[:8]]},
        "joint": joint | {"examples": joint_captions[:8]},
        "marginals": {
            "distinct_scenes": len({s.facts() for s in marginal_scenes}) / num_scenes,
            "distinct_captions": len(set(marginal_captions)) / num_scenes,
            "captions_parsed": float(np.mean([read_caption(c) is not None for c in marginal_captions])),
            "examples": marginal_captions[:8],
        },
        "decoder": {
            "exact": decoder_exact,
            "examples": [{"truth": t, "decoded": d} for t, d in list(zip(truth, decoded))[:8]],
        },
        "num_scenes": num_scenes,
    }
