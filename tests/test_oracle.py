import numpy as np
import pytest
import torch
from PIL import Image

from kit.tasks.data import image_to_tensor
from kit.verbs.oracle_check import oracle_check
from kit.world import Scene, SceneObject, render, sample_scene, scene_rng
from kit.world.oracle import ImageFormatError, Oracle
from kit.world.perturb import PERTURBATIONS

TRAINING_SIZE = 48  # recipes/lap.yaml's data.image_size (checked below)


@pytest.mark.parametrize("size", [TRAINING_SIZE, 64])
def test_oracle_accuracy_clean_and_perturbed(size):
    """At the size the kit trains at and at 64 px: every render read back, and >= 0.95 of scenes
    under each perturbation (noise, blur, colour jitter, all three, strong blur, resampling, JPEG)."""
    report = oracle_check(n=300, sizes=[size], seed=1)
    per = {k: v["exact_scene"] for k, v in report["sizes"][str(size)].items()}
    assert set(per) == {"clean", *PERTURBATIONS}
    assert per["clean"] >= 0.99, per
    assert min(per.values()) >= 0.95, per


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
