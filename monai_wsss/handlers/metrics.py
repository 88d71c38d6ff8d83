"""Metric handlers that use each case's voxel spacing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler

__all__ = ["SpacingAwareMetricHandler"]


class SpacingAwareMetricHandler(IgniteMetricHandler):
    """
    :py:class:`monai.handlers.IgniteMetricHandler` that passes each case's voxel spacing, read from the label's
    ``MetaTensor.pixdim``, to the metric (``spacing=``), so surface distances such as
    ``HausdorffDistanceMetric(percentile=95)`` and ``SurfaceDistanceMetric(symmetric=True)`` are in millimetres
    rather than voxels. Cases without spacing metadata fall back to voxel units.

    Note:
        MONAI's 95HD takes the larger of the two directed 95th percentiles; medpy (used by the semi-supervised
        papers) takes the 95th percentile of both directions pooled, so values differ slightly.

    Args:
        metric_fn: a MONAI ``CumulativeIterationMetric`` whose ``__call__`` accepts ``spacing``.
        output_transform, save_details: as ``IgniteMetricHandler``.
    """

    def update(self, output: Sequence[torch.Tensor]) -> None:
        if len(output) != 2:
            raise ValueError(f"output must have length 2, got {len(output)}.")
        y_pred, y = output
        spacing = [[float(s) for s in yy.pixdim] if isinstance(yy, MetaTensor) else None for yy in y]
        if any(s is None for s in spacing):
            self.metric_fn(y_pred, y)
        else:
            self.metric_fn(y_pred, y, spacing=spacing)
