import numpy as np
import pytest
import torch
from PIL import Image

from kit.images import image_to_tensor
from kit.verbs.oracle_check import oracle_check
from kit.world import Scene, SceneObject, render, sample_scene, scene_rng
from kit.world.oracle import ImageFormatError, Oracle
from kit.world.perturb import PERTURBATIONS

TRAINING_SIZE = 48  # recipes/lap.yaml's data.image_size (checked below)


@pytest.mark.parametrize("size", [32, TRAINING_SIZE, 64])
@pytest.mark.slow
def test_oracle_accuracy_clean_and_perturbed(size):
    """The README's oracle table (`results/oracle.json`, 500 scenes per size) on the first 300 of the
    same scenes and perturbations: a 1.000 there means no miss here, and every other figure holds
    within two binomial standard errors of 300 reads."""
    import json

    claimed = json.loads(open("results/oracle.json").read())
    report = oracle_check(n=300, sizes=[size], seed=claimed["seed"])
    per = {k: v["exact_scene"] for k, v in report["sizes"][str(size)].items()}
    assert set(per) == {"clean", *PERTURBATIONS, "redrawn"}
    for name, value in per.items():
        figure = claimed["sizes"][str(size)][name]["exact_scene"]
        bound = 1.0 if figure == 1.0 else figure - 2 * (figure * (1 - figure) / 300) ** 0.5
        assert value >= bound, (name, value, figure)


@pytest.mark.slow
def test_upsampled_reading_is_exact_on_small_renders():
    """Images under `read_size` are read up-sampled; that must not cost a single clean scene at 32 or 48 px."""
    scenes = [sample_scene(scene_rng(0, 5, i)) for i in range(60)]
    for size in (32, 48):
        for oracle in (Oracle(), Oracle(read_size=0)):
            assert all(oracle.read(render(s, size)).facts() == s.facts() for s in scenes), (size, oracle)


def test_oracle_reads_every_attribute():
    scene = Scene(
        (
            SceneObject("triangle", "orange", "small", 0, 0, (0.9, -0.9)),
            SceneObject("diamond", "yellow", "large", 1, 1),
            SceneObject("circle", "purple", "small", 2, 1, (-1.0, 1.0)),
            SceneObject("square", "green", "large", 2, 2),
        )
    )
    for size in (32, 64):
        assert Oracle().read(render(scene, size)).facts() == scene.facts()


def test_oracle_sees_nothing_in_noise_or_blank_images():
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert len(Oracle().read(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))) == 0
    assert len(Oracle().read(render(Scene(()), 32))) == 0


def test_oracle_accepts_model_tensors_and_pil_images():
    scene = sample_scene(scene_rng(0, 3, 1))
    image = render(scene, 32)
    assert Oracle().read(image_to_tensor(image)).facts() == scene.facts()
    assert Oracle().read(Image.fromarray(image).convert("RGBA")).facts() == scene.facts()  # converted, not refused


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((32, 48, 3), np.uint8), "square image"),
        (np.zeros((32, 32), np.uint8), r"\(H, W, 3\) uint8"),
        (np.zeros((32, 32, 3), np.float32), r"\(H, W, 3\) uint8"),
        (torch.zeros(3, 32, 32) + 5, r"in \[-1, 1\]"),
        (torch.zeros(1, 32, 32), r"float \(3, H, W\)"),
    ],
)
def test_oracle_refuses_images_it_cannot_score(bad, message):
    with pytest.raises(ImageFormatError, match=message):
        Oracle().read(bad)


def test_the_oracle_is_checked_at_the_default_training_size():
    import yaml

    recipe = yaml.safe_load(open("recipes/lap.yaml"))
    assert recipe["data"]["init_args"]["image_size"] == TRAINING_SIZE


def _model_like(scene: Scene, size: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A render with the flaws of a generated image that leave its facts intact (or, for the
    negative controls, that change them)."""
    from kit.world.perturb import gaussian_blur
    from kit.world.render import BACKGROUND

    image = render(scene, size).astype(np.float32)
    background = np.array(BACKGROUND, np.float32)
    on = np.abs(image - background).sum(-1) > 30  # object pixels
    cell = size // 3
    if kind == "soft_and_off_colour":  # soft edges and each object's colour off by up to 20 per channel
        for obj in scene.objects:
            block = (slice(obj.row * cell, (obj.row + 1) * cell), slice(obj.col * cell, (obj.col + 1) * cell))
            image[block][on[block]] += rng.uniform(-20, 20, 3)
        image = np.stack([gaussian_blur(image[..., ch], 0.7, radius=None) for ch in range(3)], axis=-1)
    elif kind == "holes":  # 8 % of each object's pixels lost to background
        holes = on & (rng.random(on.shape) < 0.08)
        image[holes] = background
    elif kind == "ghost":  # a faint blob (15 % contrast) in an empty cell: not an object
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in {o.cell for o in scene.objects}]
        r, c = free[int(rng.integers(len(free)))]
        ys, xs = np.mgrid[:size, :size]
        blob = ((ys - (r + 0.5) * cell) ** 2 + (xs - (c + 0.5) * cell) ** 2) < (0.35 * cell) ** 2
        image[blob] = 0.85 * image[blob] + 0.15 * np.array([220, 40, 40], np.float32)
    elif kind == "recoloured":  # negative control: one object in another palette colour
        from kit.world.scene import COLOURS

        obj = scene.objects[0]
        other = next(c for c in COLOURS if c != obj.colour)
        block = (slice(obj.row * cell, (obj.row + 1) * cell), slice(obj.col * cell, (obj.col + 1) * cell))
        image[block][on[block]] = np.array(COLOURS[other], np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_oracle_reads_scenes_drawn_by_another_rasteriser():
    """Shapes drawn by PIL, slightly mis-sized, mis-placed, turned and off-colour, as a model draws
    them: the oracle reads >= 0.95 of the scenes exactly at the training size (and 0.90 at 32 px)."""
    from kit.world.perturb import redraw

    rng = np.random.default_rng(5)
    scenes = [sample_scene(scene_rng(0, 9, i)) for i in range(150)]
    for size, floor in ((TRAINING_SIZE, 0.95), (32, 0.90)):
        right = [Oracle().read(redraw(s, size, rng)).facts() == s.facts() for s in scenes]
        assert np.mean(right) >= floor, (size, np.mean(right))
    # without the rescaled templates a square drawn a little large reads as a circle
    rigid = Oracle(template_scales=())
    right = [rigid.read(redraw(s, TRAINING_SIZE, rng)).facts() == s.facts() for s in scenes]
    assert np.mean(right) < 0.92, np.mean(right)


@pytest.mark.parametrize("kind", ["soft_and_off_colour", "holes", "ghost"])
@pytest.mark.slow
def test_oracle_reads_model_like_flaws_that_keep_the_facts(kind):
    """Generated images are not renders: soft edges, colours a little off, holes, faint ghosts.
    At the training size the oracle still reads >= 0.95 of such scenes exactly."""
    rng = np.random.default_rng(3)
    scenes = [sample_scene(scene_rng(0, 7, i)) for i in range(120)]
    scenes = [s for s in scenes if len(s) < 9]
    right = [Oracle().read(_model_like(s, TRAINING_SIZE, rng, kind)).facts() == s.facts() for s in scenes]
    assert np.mean(right) >= 0.95, (kind, np.mean(right))


@pytest.mark.slow
def test_oracle_is_not_fooled_by_a_wrong_colour():
    rng = np.random.default_rng(4)
    scenes = [sample_scene(scene_rng(0, 8, i)) for i in range(120)]
    wrong = [Oracle().read(_model_like(s, TRAINING_SIZE, rng, "recoloured")).facts() != s.facts() for s in scenes]
    assert np.mean(wrong) >= 0.99, np.mean(wrong)
    # colours off every palette hue (cyan, magenta, grey-white) are no object at all, however clear their shape
    for colour in [(40, 200, 200), (230, 40, 200), (200, 200, 200)]:
        canvas = render(Scene((SceneObject("square", "red", "large", 1, 1),)), TRAINING_SIZE).astype(np.float32)
        on = np.abs(canvas - np.array([220, 40, 40], np.float32)).sum(-1) < 30
        canvas[on] = colour
        assert len(Oracle().read(canvas.astype(np.uint8))) == 0, colour
