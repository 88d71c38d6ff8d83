from .dual_task import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SelectOutput
from .ensemble import SegmentationEnsemble

__all__ = ["DualTaskNet", "DualTaskVNet", "ReferenceVNetFeatures", "SegmentationEnsemble", "SelectOutput"]
