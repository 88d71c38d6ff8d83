"""Metric handlers: spacing-aware surface distances, ensemble members, feature distances of generated images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.metrics import Metric
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler, MeanDice, from_engine
from monai.metrics import FIDMetric

__all__ = ["FeatureDistance", "SpacingAwareMetricHandler", "member_dice_metrics"]


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


class FeatureDistance(Metric):
    """
    Feature distance between real and generated images of the same masks, for an evaluator whose output holds the
    real image under ``real_key`` and the generated one under ``fake_key`` (an ignite metric: pass it in a MONAI
    evaluator's ``additional_metrics``). Embeddings come from ``embedding`` (e.g.
    :py:class:`monai_wsss.networks.FeatureEmbedding` of a segmenter trained on the real images).

    - ``mode="fid"``: the Frechet distance between Gaussians fitted to the two embedding sets (Heusel et al.,
      NeurIPS 2017, Eq. 6), MONAI's ``FIDMetric``; needs several images, and is noisy with few;
    - ``mode="paired"``: mean distance between the embeddings of each real image and its generated twin, divided by
      the mean distance between embeddings of different real images: 0 means indistinguishable features, about 1
      means as far as another real image.
    """

    def __init__(
        self,
        embedding: torch.nn.Module,
        mode: str = "paired",
        real_key: str = "label",
        fake_key: str = "pred",
        device: str | torch.device = "cpu",
    ) -> None:
        if mode not in ("fid", "paired"):
            raise ValueError(f"mode must be 'fid' or 'paired', got {mode!r}.")
        self.embedding = embedding
        self.mode = mode
        super().__init__(output_transform=from_engine([real_key, fake_key]), device=device)

    def reset(self) -> None:
        self._real: list[torch.Tensor] = []
        self._fake: list[torch.Tensor] = []

    def update(self, output: Sequence) -> None:
        real, fake = (torch.stack(list(x)) if isinstance(x, list) else torch.as_tensor(x) for x in output)
        if real.shape != fake.shape:
            raise ValueError(f"real and generated images differ: {tuple(real.shape)} vs {tuple(fake.shape)}.")
        self._real.append(self.embedding(real.float()).cpu())
        self._fake.append(self.embedding(fake.float()).cpu())

    def compute(self) -> float:
        if not self._real:
            raise ValueError("FeatureDistance: no image was seen.")
        real, fake = torch.cat(self._real), torch.cat(self._fake)
        if self.mode == "fid":
            if len(real) < 2:
                raise ValueError("FeatureDistance(mode='fid') needs at least two images.")
            return float(FIDMetric()(fake.double(), real.double()))
        paired = (real - fake).norm(dim=1).mean()
        if len(real) < 2:
            return float(paired)
        between = torch.cdist(real, real)
        n = len(real)
        return float(paired / (between.sum() / (n * (n - 1))).clamp_min(1e-12))
