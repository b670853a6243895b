"""What the shapes VLM learns: conversations built from the shapes world.

Each task turns a scene into one conversation with a single answer to learn:

    describe  image + 'describe the image in detail.'         -> canonical description
    qa        image + a question (`kit.world.questions`)       -> a one-word or one-phrase answer
    rewrite   VERIFI system prompt + a short prompt            -> a canonical description consistent with it
    edit      edit system prompt + image + an edit instruction -> canonical description of the edited scene

Rewrite prompts mention every object of their scene (with some attributes left out, or
grouped and counted), so the detailed rewrite only fills in what the prompt left open and
never has to invent objects. The rewrite is made easy to learn and always consistent: it
lists the objects in the order the prompt names them (a monotone copy, which a small model
learns far sooner than re-sorting them into reading order) and puts every object whose place
the prompt leaves open in the first free cell in reading order (two objects in a relation go
to fixed cells that satisfy it), so it never has to remember which cells it has used. Training draws training scenes only; `held_out=True` draws
held-out scenes for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.world import caption, render
from kit.world.captions import describe, noun_phrase
from kit.world.edits import sample_edit
from kit.world.parser import parse_caption
from kit.world.questions import QUESTION_KINDS, ask
from kit.world.scene import GRID, Scene, SceneObject, is_held_out, sample_scene, sample_training_scene

TASKS = ("describe", "qa", "rewrite", "edit")

REWRITE_SYSTEM_PROMPT = "Rewrite the prompt as a detailed description of the scene."
"""VERIFI's fixed system prompt: the shapes VLM is trained to rewrite under it."""

EDIT_SYSTEM_PROMPT = "Describe the image after the edit."
"""System prompt of the editing task: the answer describes the edited scene."""

DESCRIBE_INSTRUCTIONS = ("describe the image in detail.", "describe the image.", "what is in the image?", "describe the scene.")


@dataclass
class Conversation:
    """One training or evaluation example.

    Args:
        task: one of `TASKS`.
        user: the user's text.
        answer: what the assistant should say.
        system: the system prompt (None for none).
        images: `(H, W, 3)` uint8 renders shown before the user's text.
        scene: the scene the answer describes (the edited scene for edits), for scoring.
        kind: sub-kind (question kind, edit kind, prompt register), for per-kind scores.
        image_scenes: the scene shown in each image (for cell supervision of the vision tower).
    """

    task: str
    user: str
    answer: str
    system: str | None = None
    images: list[np.ndarray] = field(default_factory=list)
    scene: Scene | None = None
    kind: str = ""
    image_scenes: list[Scene] = field(default_factory=list)

    def messages(self, with_answer: bool = True) -> list[dict]:
        """Chat messages in the transformers format (image items before the text)."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        content = [{"type": "image"} for _ in self.images] + [{"type": "text", "text": self.user}]
        out.append({"role": "user", "content": content})
        if with_answer:
            out.append({"role": "assistant", "content": self.answer})
        return out


def draw_scene(rng: np.random.Generator, held_out: bool, num_objects: int | None = None) -> Scene:
    """A training scene, or (with `held_out`) a scene of the held-out split."""
    if not held_out:
        return sample_training_scene(rng, num_objects)
    while True:
        scene = sample_scene(rng, num_objects)
        if is_held_out(scene):
            return scene


def _same_kind(scene: Scene) -> Scene:
    """All objects take the first object's shape and colour (counting prompts: 'three red circles')."""
    first = scene.objects[0]
    return Scene(tuple(type(o)(first.shape, first.colour, o.size, o.row, o.col, o.jitter) for o in scene.objects))


def rewrite_prompt(rng: np.random.Generator, held_out: bool = False) -> tuple[str, Scene, str]:
    """A short prompt that mentions every object of its scene, the scene, and the prompt's register."""
    register = ("partial", "short", "count", "relation", "counting", "detailed")[int(rng.choice(6, p=[0.35, 0.15, 0.1, 0.15, 0.1, 0.15]))]
    if register == "relation":
        scene = draw_scene(rng, held_out, 2)
        return caption(scene, "relation", rng), scene, register
    if register == "counting":
        while True:
            scene = _same_kind(draw_scene(rng, held_out, int(rng.integers(2, 5))))
            if is_held_out(scene) == held_out:
                break
        return noun_phrase([scene.objects[0].colour, scene.objects[0].shape], len(scene)), scene, register
    scene = draw_scene(rng, held_out, int(rng.integers(1, 5)))
    if register in ("short", "count", "partial"):
        return caption(scene, register, rng), scene, register
    return caption(scene, "detailed", rng), scene, register


RELATION_CELLS = {"left of": ((1, 0), (1, 2)), "right of": ((1, 2), (1, 0)), "above": ((0, 1), (2, 1)), "below": ((2, 1), (0, 1))}
"""Where a rewrite puts the two objects of a relation (first, second) when the prompt gives no places."""


def rewrite_target(prompt: str, scene: Scene) -> list[SceneObject]:
    """The objects a rewrite of `prompt` (drawn from `scene`) describes, in the prompt's order.

    Sizes and colours the prompt leaves open come from `scene`; places it leaves open are the
    first free cells in reading order, or the fixed cells of `RELATION_CELLS` for a relation.
    """
    spec = parse_caption(prompt)
    matched = spec.match(scene)
    if matched is None:
        raise ValueError(f"the prompt {prompt!r} does not describe its scene")
    given = [spec.objects[s].cell for s in spec.slots()]
    if spec.relations and not any(given):
        r = spec.relations[0]
        cells = [None, None]
        cells[r.a], cells[r.b] = RELATION_CELLS[r.rel]
    else:
        taken = {c for c in given if c is not None}
        free = iter([(row, col) for row in range(GRID) for col in range(GRID) if (row, col) not in taken])
        cells = [c if c is not None else next(free) for c in given]
    return [SceneObject(o.shape, o.colour, o.size, *cell) for o, cell in zip(matched, cells)]


def make_conversation(task: str, rng: np.random.Generator, image_size: int = 32, held_out: bool = False) -> Conversation:
    """One conversation of `task` drawn from `rng`."""
    if task == "describe":
        scene = draw_scene(rng, held_out)
        instruction = DESCRIBE_INSTRUCTIONS[int(rng.integers(len(DESCRIBE_INSTRUCTIONS)))]
        return Conversation(task, instruction, describe(scene), images=[render(scene, image_size)], scene=scene, kind=str(len(scene)), image_scenes=[scene])
    if task == "qa":
        scene = draw_scene(rng, held_out)
        q = ask(scene, QUESTION_KINDS[int(rng.integers(len(QUESTION_KINDS)))], rng)
        return Conversation(task, q.question, q.answer, images=[render(scene, image_size)], scene=scene, kind=q.kind, image_scenes=[scene])
    if task == "rewrite":
        while True:  # the answer's scene (its places re-assigned) must be of the same split as the drawn one
            prompt, scene, register = rewrite_prompt(rng, held_out)
            order = rewrite_target(prompt, scene)
            if is_held_out(Scene(tuple(order))) == held_out:
                break
        return Conversation(task, prompt, describe(Scene(tuple(order)), order), system=REWRITE_SYSTEM_PROMPT, scene=Scene(tuple(order)), kind=register)
    if task == "edit":
        while True:  # the edited scene too: training never answers with a held-out scene
            edit = sample_edit(rng, draw_scene(rng, held_out))
            if is_held_out(edit.target) == held_out:
                break
        return Conversation(
            task,
            edit.instruction,
            describe(edit.target),
            system=EDIT_SYSTEM_PROMPT,
            images=[render(edit.source, image_size)],
            scene=edit.target,
            kind=edit.kind,
            image_scenes=[edit.source],
        )
    raise ValueError(f"unknown VLM task {task!r}; known: {', '.join(TASKS)}")


def corpus(num_scenes: int, seed: int = 0) -> list[str]:
    """Every kind of text the VLM reads or writes, for training its tokenizer."""
    rng = np.random.default_rng([seed, 97])
    texts = [REWRITE_SYSTEM_PROMPT, EDIT_SYSTEM_PROMPT, *DESCRIBE_INSTRUCTIONS, "system", "user", "assistant"]
    for i in range(num_scenes):
        c = make_conversation(TASKS[i % len(TASKS)], rng)
        texts += [c.user, c.answer]
        texts += [caption(c.scene, style, rng) for style in ("detailed", "short", "relation", "count")]
    return texts
