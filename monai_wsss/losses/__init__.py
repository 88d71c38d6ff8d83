"""Losses, one module per method family."""

from .dual_task import DualTaskConsistencyLoss, LevelSetConsistencyLoss, smooth_heaviside

__all__ = ["DualTaskConsistencyLoss", "LevelSetConsistencyLoss", "smooth_heaviside"]
