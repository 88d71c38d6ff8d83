"""Networks: 2D/3D, configured by ``spatial_dims``."""

from .nets import (
    DualTaskNet,
    DualTaskVNet,
    FeatureEmbedding,
    MaskToImageGenerator,
    ReferenceVNetFeatures,
    SegmentationEnsemble,
    SelectOutput,
    discriminator_logits,
)

__all__ = [
    "DualTaskNet",
    "DualTaskVNet",
    "FeatureEmbedding",
    "MaskToImageGenerator",
    "ReferenceVNetFeatures",
    "SegmentationEnsemble",
    "SelectOutput",
    "discriminator_logits",
]
