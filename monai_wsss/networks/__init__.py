"""Networks: 2D/3D, configured by ``spatial_dims``."""

from .nets import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SegmentationEnsemble, SelectOutput

__all__ = ["DualTaskNet", "DualTaskVNet", "ReferenceVNetFeatures", "SegmentationEnsemble", "SelectOutput"]
