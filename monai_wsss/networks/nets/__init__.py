from .cam_classifier import CAMClassifier, resnet_cam_classifier
from .dual_task import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SelectOutput
from .embedding import FeatureEmbedding
from .ensemble import SegmentationEnsemble
from .groupwise import CoAttention, ConvGRUCell, GraphDropout, GroupGraph, GroupwiseClassifier
from .mask_gan import LatentMaskGenerator
from .ocr import MultiScaleFeatures, ObjectContextualHead, ObjectContextualNet, region_representations
from .pix2pix import MaskToImageGenerator, discriminator_logits

__all__ = [
    "CoAttention",
    "ConvGRUCell",
    "GraphDropout",
    "GroupGraph",
    "GroupwiseClassifier",
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
]
