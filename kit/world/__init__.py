"""The shapes world: procedural scenes, their renders and their captions (the kit's offline testbed)."""

from kit.world.captions import REGISTERS, STYLES, caption
from kit.world.render import render
from kit.world.scene import COLOURS, SHAPES, SIZES, Scene, SceneObject, sample_scene, scene_rng

__all__ = ["COLOURS", "REGISTERS", "SHAPES", "SIZES", "STYLES", "Scene", "SceneObject", "caption", "render", "sample_scene", "scene_rng"]
