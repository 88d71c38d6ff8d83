"""Networks: 2D/3D, configured by ``spatial_dims``."""

from .nets import (
    DualTaskNet,
    DualTaskVNet,
    FeatureEmbedding,
    LatentMaskGenerator,
    MaskToImageGenerator,
    ReferenceVNetFeatures,
    SegmentationEnsemble,
    SelectOutput,
    discriminator_logits,
)
from .utils import frozen_norm_statistics

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
    "frozen_norm_statistics",
]
