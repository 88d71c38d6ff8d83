"""Active learning with geometric priors (Konyushkova, Sznitman, Fua; ICCV 2015, CVIU 2019): the algorithms only
(region graph and geometric uncertainty, planar-patch search, query strategies behind one protocol, annotation
state and annotators). Its transforms
(``Supervoxels``, ``PixelUncertainty``) are in :py:mod:`monai_wsss.transforms`, its loss (``PartialLabelLoss``) in
:py:mod:`monai_wsss.losses`."""

from __future__ import annotations

from monai_wsss.active.geometry import (
    RegionGraph,
    appearance_weights,
    combined_uncertainty,
    random_walk,
    region_adjacency,
    region_mean,
    region_means,
    transition_matrix,
)
from monai_wsss.active.planes import PlaneResult, PlaneSearch, axis_aligned_plane_search, plane_mask, unit_normal
from monai_wsss.active.state import AnnotationState, FileAnnotator, SimulatedAnnotator
from monai_wsss.active.strategies import (
    EntropyStrategy,
    FeatureUncertaintyStrategy,
    GeometricPlaneStrategy,
    GeometricStrategy,
    MarginStrategy,
    PairwiseEntropyStrategy,
    QueryStrategy,
    RandomStrategy,
    available_regions,
    fill_budget,
)

__all__ = [
    "AnnotationState",
    "EntropyStrategy",
    "FeatureUncertaintyStrategy",
    "GeometricPlaneStrategy",
    "GeometricStrategy",
    "MarginStrategy",
    "PairwiseEntropyStrategy",
    "QueryStrategy",
    "RandomStrategy",
    "available_regions",
    "fill_budget",
    "FileAnnotator",
    "PlaneResult",
    "PlaneSearch",
    "RegionGraph",
    "SimulatedAnnotator",
    "appearance_weights",
    "axis_aligned_plane_search",
    "combined_uncertainty",
    "plane_mask",
    "random_walk",
    "region_adjacency",
    "region_mean",
    "region_means",
    "transition_matrix",
    "unit_normal",
]
