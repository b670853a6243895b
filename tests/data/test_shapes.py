"""`ShapesDataModule` and `ShapesDataset`: the caption and count curricula, read in order, and the held-out split."""

import pytest

from kit.data import ShapesDataModule, ShapesDataset
from kit.world.parser import parse_caption


def test_curriculum_items_are_detailed_then_the_mix_in_index_order():
    dm = ShapesDataModule(image_size=32, batch_size=8, caption_weights=[0.0, 1.0, 0.0, 0.0, 0.0], caption_curriculum=16)
    prompts = [dm.train_set.scene_and_prompt(i)[1] for i in range(32)]
    assert all(parse_caption(p).exhaustive for p in prompts[:16])  # detailed: every attribute and place
    assert not any(parse_caption(p).exhaustive for p in prompts[16:])  # then the 'short' register of the mix
    first = next(iter(dm.train_dataloader()))
    assert first.prompts == prompts[:8]  # read in order, so the curriculum comes first
    plain = ShapesDataModule(image_size=32, batch_size=8, caption_weights=[0.0, 1.0, 0.0, 0.0, 0.0])
    assert not any(parse_caption(plain.train_set.scene_and_prompt(i)[1]).exhaustive for i in range(16))
    with pytest.raises(ValueError, match="caption_curriculum"):
        ShapesDataModule(caption_curriculum=-1)


def test_count_curriculum_stages_limit_objects_then_the_whole_world():
    dm = ShapesDataModule(image_size=32, batch_size=8, count_curriculum=[[24, 1], [48, 2]])
    counts = [len(dm.train_set.scene_and_prompt(i)[0]) for i in range(200)]
    assert set(counts[:24]) == {1}
    assert set(counts[24:48]) == {1, 2}  # 24 draws from 1..2 give both
    assert max(counts[48:]) > 2  # then up to MAX_OBJECTS
    first = next(iter(dm.train_dataloader()))
    assert first.prompts == [dm.train_set.scene_and_prompt(i)[1] for i in range(8)]  # read in order
    # items outside every stage draw exactly the scenes of a run without the curriculum
    plain = ShapesDataModule(image_size=32, batch_size=8)
    assert [plain.train_set.scene_and_prompt(i) for i in range(48, 60)] == [dm.train_set.scene_and_prompt(i) for i in range(48, 60)]
    for bad, match in [([[10, 0]], "max_objects"), ([[10, 1], [5, 2]], "increase"), ([[10]], "end_item"), ([3200, 1], "end_item")]:
        with pytest.raises(ValueError, match=match):
            ShapesDataModule(count_curriculum=bad)


def test_the_held_out_split_holds_only_scenes_that_training_never_draws():
    from kit.data import ShapesDataset
    from kit.world.scene import is_held_out

    held_out = ShapesDataset(40, "held_out", caption_styles=["detailed"])
    assert all(is_held_out(held_out.scene_and_prompt(i)[0]) for i in range(40))
    for split in ("train", "val", "test"):
        data = ShapesDataset(200, split)
        assert not any(is_held_out(data.scene_and_prompt(i)[0]) for i in range(200)), f"the {split} split draws a held-out scene"
    with pytest.raises(ValueError, match="unknown split 'heldout'; known: train, val, test, held_out"):
        ShapesDataset(4, "heldout")


def test_a_target_style_adds_the_caption_to_write_and_leaves_the_prompts_alone():
    from kit.data.shapes import collate_items
    from kit.world.captions import describe

    plain = ShapesDataset(8, "train", seed=3, image_size=16)
    written = ShapesDataset(8, "train", seed=3, image_size=16, target_style="canonical")
    items = [written[i] for i in range(8)]
    assert [it["prompt"] for it in items] == [plain[i]["prompt"] for i in range(8)], "the prompts do not change"
    assert [it["target"] for it in items] == [describe(written.scene_and_prompt(i)[0]) for i in range(8)]
    assert "target" not in plain[0]
    batch = collate_items(items)
    assert batch.targets == [it["target"] for it in items] and collate_items([plain[0]]).targets is None
    with pytest.raises(ValueError, match=r"unknown caption styles \['poem'\]"):
        ShapesDataset(4, target_style="poem")
    with pytest.raises(ValueError, match="a batch of 8 prompts has 2 target captions"):
        type(batch)(images=batch.images, prompts=batch.prompts, targets=batch.targets[:2])
