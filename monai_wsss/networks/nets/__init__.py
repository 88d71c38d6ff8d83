from .dual_task import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SelectOutput
from .embedding import FeatureEmbedding
from .ensemble import SegmentationEnsemble
from .mask_gan import LatentMaskGenerator
from .pix2pix import MaskToImageGenerator, discriminator_logits

__all__ = [
    "DualTaskNet",
    "DualTaskVNet",
    "FeatureEmbedding",
    "LatentMaskGenerator",
    "MaskToImageGenerator",
    "ReferenceVNetFeatures",
    "SegmentationEnsemble",
    "SelectOutput",
    "discriminator_logits",
]
