"""Attribution maps for weakly supervised segmentation: CAM classifier, per-sample CAM/Grad-CAM, AdvCAM, PRM, seeds."""

from .advcam import AdvCAM, advcam_reference
from .cam import PerSampleCAM, PerSampleGradCAM, PerSampleModelWithHooks, max_normalizer, per_sample_class_index
from .classifier import CAMClassifier, resnet_cam_classifier
from .instances import (
    PeakInstanceRetrieval,
    instances_to_maps,
    mask_contour,
    mask_nms,
    proposal_scores,
    superpixel_proposals,
)
from .prm import PeakResponseMapping, PeakStimulation, PeakStimulationFunction, find_peaks
from .seeds import SeedsToPseudoLabel, seeds_to_pseudo_label

__all__ = [
    "AdvCAM",
    "advcam_reference",
    "PerSampleCAM",
    "PerSampleGradCAM",
    "PerSampleModelWithHooks",
    "max_normalizer",
    "per_sample_class_index",
    "CAMClassifier",
    "resnet_cam_classifier",
    "PeakResponseMapping",
    "PeakStimulation",
    "PeakStimulationFunction",
    "find_peaks",
    "PeakInstanceRetrieval",
    "instances_to_maps",
    "mask_contour",
    "mask_nms",
    "proposal_scores",
    "superpixel_proposals",
    "SeedsToPseudoLabel",
    "seeds_to_pseudo_label",
]
