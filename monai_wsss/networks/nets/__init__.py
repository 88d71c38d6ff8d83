from .dual_task import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SelectOutput

__all__ = ["DualTaskNet", "DualTaskVNet", "ReferenceVNetFeatures", "SelectOutput"]
