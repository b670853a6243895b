"""The LightningModules that train the kit's shipped assets: the shapes VLM (`kit:shapes-vlm`), the shapes
autoencoder (`kit:shapes-ae`) and the joint model's text codec. They are not diffusion tasks: each trains one
frozen part that the tasks then read."""

from kit.pretrain.autoencoder import AutoencoderPretraining
from kit.pretrain.text_codec import TextLatentPretraining
from kit.pretrain.vlm import ShapesVLMPretraining

__all__ = ["AutoencoderPretraining", "ShapesVLMPretraining", "TextLatentPretraining"]
