"""Networks: 2D/3D, configured by ``spatial_dims``."""

from .nets import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SelectOutput

__all__ = ["DualTaskNet", "DualTaskVNet", "ReferenceVNetFeatures", "SelectOutput"]
