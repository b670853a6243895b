"""The caption curriculum: the first items are detailed captions, read in order; then the recipe's mix."""

import pytest

from kit.tasks import ShapesDataModule
from kit.world.parser import parse_caption


def test_curriculum_items_are_detailed_then_the_mix_in_index_order():
    dm = ShapesDataModule(image_size=32, batch_size=8, caption_weights=[0.0, 1.0, 0.0, 0.0], caption_curriculum=16)
    prompts = [dm.train_set.scene_and_prompt(i)[1] for i in range(32)]
    assert all(parse_caption(p).exhaustive for p in prompts[:16])  # detailed: every attribute and place
    assert not any(parse_caption(p).exhaustive for p in prompts[16:])  # then the 'short' register of the mix
    first = next(iter(dm.train_dataloader()))
    assert first["prompt"] == prompts[:8]  # read in order, so the curriculum comes first
    plain = ShapesDataModule(image_size=32, batch_size=8, caption_weights=[0.0, 1.0, 0.0, 0.0])
    assert not any(parse_caption(plain.train_set.scene_and_prompt(i)[1]).exhaustive for i in range(16))
    with pytest.raises(ValueError, match="caption_curriculum"):
        ShapesDataModule(caption_curriculum=-1)
