"""Metric handlers that use each case's voxel spacing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler, MeanDice, from_engine

__all__ = ["SpacingAwareMetricHandler", "member_dice_metrics"]


def member_dice_metrics(
    num_models: int, pred_prefix: str = "pred_", label_key: str = "label", include_background: bool = False
) -> dict[str, MeanDice]:
    """``{"dice_member_{i}": MeanDice(...)}`` for the S members of an ensemble whose (one-hot) predictions are under
    ``f"{pred_prefix}{i}"`` (the ``pred_keys`` of ``EnsembleEvaluator``), to report each member beside the ensemble."""
    return {
        f"dice_member_{i}": MeanDice(
            include_background=include_background, output_transform=from_engine([f"{pred_prefix}{i}", label_key])
        )
        for i in range(int(num_models))
    }


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
