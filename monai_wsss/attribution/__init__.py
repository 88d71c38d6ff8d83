"""Attribution algorithms for weakly supervised segmentation: per-sample CAM / Grad-CAM, AdvCAM, PRM and PRM instance
retrieval, and the seed methods built on them (the ``SeedMethod`` protocol: ``CAMSeeds``, ``AdvCAMSeeds``,
``PRMSeeds``, ``GroupwiseSeeds``; ``MCOFSeeds`` runs rounds and lives in :py:mod:`monai_wsss.apps`). The classifier
they explain (``CAMClassifier``) is in :py:mod:`monai_wsss.networks`, seeds to pseudo-labels (``SeedsToPseudoLabel``)
in :py:mod:`monai_wsss.transforms`."""

from .advcam import AdvCAM, advcam_reference
from .cam import PerSampleCAM, PerSampleGradCAM, PerSampleModelWithHooks, max_normalizer, per_sample_class_index
from .instances import (
    PeakInstanceRetrieval,
    instances_to_maps,
    mask_contour,
    mask_nms,
    proposal_scores,
    superpixel_proposals,
)
from .prm import PeakResponseMapping, PeakStimulation, PeakStimulationFunction, find_peaks
from .seeds import (
    AdvCAMSeeds,
    CAMSeeds,
    GroupwiseSeeds,
    PRMSeeds,
    SeedMethod,
    check_tags,
    masked_max_normalise,
    pick_methods,
    resize_maps,
)

__all__ = [
    "AdvCAM",
    "advcam_reference",
    "PerSampleCAM",
    "PerSampleGradCAM",
    "PerSampleModelWithHooks",
    "max_normalizer",
    "per_sample_class_index",
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
    "SeedMethod",
    "CAMSeeds",
    "AdvCAMSeeds",
    "PRMSeeds",
    "GroupwiseSeeds",
    "pick_methods",
    "check_tags",
    "masked_max_normalise",
    "resize_maps",
]
