"""kit: image generation conditioned on a frozen vision-language model.

Stages (see `kit.types`): FrozenEncoder -> FusionHead -> Backbone, trained by an Objective
and sampled by a Sampler, composed by a LightningModule in `kit.tasks`.
"""

__version__ = "0.1.0"
