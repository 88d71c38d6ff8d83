"""Active learning with geometric priors (Konyushkova, Sznitman, Fua; ICCV 2015, CVIU 2019): supervoxels, feature
and geometric uncertainty, planar-patch queries, partial-label loss and a resumable annotation state."""

from __future__ import annotations

from monai_wsss.active.geometry import (
    RegionGraph,
    appearance_weights,
    combined_uncertainty,
    random_walk,
    region_adjacency,
    region_means,
    transition_matrix,
)
from monai_wsss.active.masked_loss import PartialLabelLoss
from monai_wsss.active.planes import PlaneResult, PlaneSearch, axis_aligned_plane_search, plane_mask, unit_normal
from monai_wsss.active.state import (
    AnnotationState,
    FileAnnotator,
    SimulatedAnnotator,
    atomic_save_nifti,
    atomic_write_json,
)
from monai_wsss.active.supervoxels import Supervoxels, SupervoxelsD, Supervoxelsd, SupervoxelsDict, relabel_consecutive
from monai_wsss.active.uncertainty import (
    UNCERTAINTY_MODES,
    PixelUncertainty,
    PixelUncertaintyD,
    PixelUncertaintyd,
    PixelUncertaintyDict,
    entropy,
    margin,
    pairwise_entropy,
    region_mean,
)

__all__ = [
    "AnnotationState",
    "FileAnnotator",
    "PartialLabelLoss",
    "PixelUncertainty",
    "PixelUncertaintyD",
    "PixelUncertaintyDict",
    "PixelUncertaintyd",
    "PlaneResult",
    "PlaneSearch",
    "RegionGraph",
    "SimulatedAnnotator",
    "Supervoxels",
    "SupervoxelsD",
    "SupervoxelsDict",
    "Supervoxelsd",
    "UNCERTAINTY_MODES",
    "appearance_weights",
    "atomic_save_nifti",
    "atomic_write_json",
    "axis_aligned_plane_search",
    "combined_uncertainty",
    "entropy",
    "margin",
    "pairwise_entropy",
    "plane_mask",
    "random_walk",
    "region_adjacency",
    "region_mean",
    "region_means",
    "relabel_consecutive",
    "transition_matrix",
    "unit_normal",
]
