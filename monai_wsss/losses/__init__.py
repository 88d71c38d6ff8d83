"""Losses, one module per method family."""

from .adversarial import FGSM, VAT, segmentation_cross_entropy
from .cotraining import AdversarialDiversityLoss, JensenShannonDivergenceLoss, generalized_jsd, kl_divergence
from .dual_task import DualTaskConsistencyLoss, LevelSetConsistencyLoss, smooth_heaviside
from .graph_triplet import GraphTripletLoss, class_graph_triplets
from .groupwise import GroupwiseSoftMarginLoss
from .locally_adaptive import LocallyAdaptiveLoss, WeightedSumLoss, chessboard_gaussian
from .mask_gan import LatentGANLoss
from .partial_label import PartialLabelLoss
from .pix2pix import ConditionalGANLoss

__all__ = [
    "GroupwiseSoftMarginLoss",
    "FGSM",
    "VAT",
    "AdversarialDiversityLoss",
    "ConditionalGANLoss",
    "DualTaskConsistencyLoss",
    "GraphTripletLoss",
    "JensenShannonDivergenceLoss",
    "LatentGANLoss",
    "LocallyAdaptiveLoss",
    "LevelSetConsistencyLoss",
    "PartialLabelLoss",
    "WeightedSumLoss",
    "chessboard_gaussian",
    "class_graph_triplets",
    "generalized_jsd",
    "kl_divergence",
    "segmentation_cross_entropy",
    "smooth_heaviside",
]
