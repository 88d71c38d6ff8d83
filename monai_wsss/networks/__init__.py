"""Networks: 2D/3D, configured by ``spatial_dims``."""

from .nets import (
    CAMClassifier,
    DualTaskNet,
    DualTaskVNet,
    FeatureEmbedding,
    LatentMaskGenerator,
    MaskToImageGenerator,
    MultiScaleFeatures,
    ObjectContextualHead,
    ObjectContextualNet,
    ReferenceVNetFeatures,
    SegmentationEnsemble,
    SelectOutput,
    discriminator_logits,
    region_representations,
    resnet_cam_classifier,
)
from .utils import (
    PretrainedWeightsLoader,
    export_encoder,
    frozen_norm_statistics,
    load_pretrained_weights,
    read_state_dict,
)

__all__ = [
    "CAMClassifier",
    "resnet_cam_classifier",
    "DualTaskNet",
    "DualTaskVNet",
    "FeatureEmbedding",
    "LatentMaskGenerator",
    "MaskToImageGenerator",
    "MultiScaleFeatures",
    "ObjectContextualHead",
    "ObjectContextualNet",
    "ReferenceVNetFeatures",
    "SegmentationEnsemble",
    "SelectOutput",
    "discriminator_logits",
    "region_representations",
    "frozen_norm_statistics",
    "PretrainedWeightsLoader",
    "export_encoder",
    "load_pretrained_weights",
    "read_state_dict",
]
