"""The joint image-text model (UniDiffuser on the kit), one slice: the task (`JointImageText`), its sampling
modes (`kit.joint.sampling`), the text codec that turns captions into a diffusable latent and back
(`TextLatentCodec`), the two-stream backbone (`JointUViT`) and its evaluation in every direction."""

from kit.joint.backbone import JointUViT
from kit.joint.codec import TextLatentCodec
from kit.joint.sampling import Guidance, JointSample, Mode
from kit.joint.task import Direction, JointImageText

__all__ = ["Direction", "Guidance", "JointImageText", "JointSample", "JointUViT", "Mode", "TextLatentCodec"]
