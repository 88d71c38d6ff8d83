"""Losses of dual-task consistency (DTC)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceLoss
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["LevelSetConsistencyLoss", "DualTaskConsistencyLoss", "smooth_heaviside"]


def smooth_heaviside(sdf: torch.Tensor, k: float = 1500.0) -> torch.Tensor:
    """The DTC task transform: a level set (negative inside) to a soft mask, ``sigmoid(-k * sdf)``."""
    return torch.sigmoid(-k * sdf)


class LevelSetConsistencyLoss(_Loss):
    """
    The dual-task consistency term L_DTC: the level-set head is mapped to a soft mask by the smooth Heaviside
    ``sigmoid(-k * sdf)`` and compared with the segmentation probabilities by squared error. It needs no label, so
    DTC applies it to every image of the batch. Input layout BNH[WD].

        Luo, X., Chen, J., Song, T., Wang, G. (2021) Semi-supervised Medical Image Segmentation through Dual-task
        Consistency. AAAI 2021 (Eq. 2, the task transform; Eq. 3, L_DTC).

    Args:
        k: steepness of the smooth Heaviside (1500 in the paper).
        sigmoid: apply a sigmoid to ``seg`` (pass logits).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the voxel-wise map).

    Example::

        >>> loss = LevelSetConsistencyLoss()
        >>> loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))  # sigmoid(0) == sigmoid(-k * 0)
        tensor(0.)
    """

    def __init__(self, k: float = 1500.0, sigmoid: bool = True, reduction: LossReduction | str = LossReduction.MEAN):
        super().__init__(reduction=LossReduction(reduction).value)
        if k <= 0:
            raise ValueError(f"`k` must be positive, got {k}.")
        self.k = float(k)
        self.sigmoid = sigmoid

    def forward(self, seg: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
        if seg.shape != sdf.shape:
            raise ValueError(f"`seg` and `sdf` shapes differ: {tuple(seg.shape)} vs {tuple(sdf.shape)}.")
        prob = torch.sigmoid(seg) if self.sigmoid else seg
        f = (smooth_heaviside(sdf, self.k) - prob) ** 2
        if self.reduction == LossReduction.MEAN.value:
            return f.mean()
        if self.reduction == LossReduction.SUM.value:
            return f.sum()
        return f


class DualTaskConsistencyLoss(_Loss):
    """
    The whole DTC objective over one joint batch whose first ``num_labeled`` samples are labelled:

        L = L_Dice(sigmoid(seg_l), y) + sdf_weight * MSE(sdf_l, sdf(y))  +  w(t) * L_DTC(seg, sdf)
            (labelled samples only)                                          (ALL samples)

    where L_Dice is the soft Dice with squared denominator (sum p^2 + sum y^2, over the whole labelled batch, as the
    reference), ``sdf(y)`` the normalised signed distance map of the label
    (:py:class:`monai_wsss.transforms.SignedDistanceMap`), and L_DTC the :py:class:`LevelSetConsistencyLoss`.
    ``w(t)`` is given per call (``unsup_weight``), set by :py:class:`monai_wsss.handlers.ConsistencyWeightScheduler`.

        Luo, X., Chen, J., Song, T., Wang, G. (2021) Semi-supervised Medical Image Segmentation through Dual-task
        Consistency. AAAI 2021 (Eq. 4, the total loss; beta = 0.3).

    This loss follows the :py:class:`monai_wsss.engines.SemiSupervisedTrainer` contract:
    ``loss(pred, target, num_labeled, unsup_weight)`` returns a dict of terms with the total under ``"loss"``.

    Args:
        k: steepness of the task transform (1500).
        sdf_weight: weight of the level-set regression (0.3).
        smooth: Dice smoothing in numerator and denominator (1e-5 as the reference).
    """

    def __init__(self, k: float = 1500.0, sdf_weight: float = 0.3, smooth: float = 1e-5) -> None:
        super().__init__()
        if sdf_weight < 0:
            raise ValueError(f"`sdf_weight` must be non-negative, got {sdf_weight}.")
        self.dice = DiceLoss(sigmoid=True, squared_pred=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)
        self.consistency = LevelSetConsistencyLoss(k=k, sigmoid=True)
        self.sdf_weight = sdf_weight

    def forward(
        self,
        pred: Sequence[torch.Tensor],
        target: Sequence[torch.Tensor],
        num_labeled: int | None = None,
        unsup_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            pred: ``(seg_logits, sdf)`` of the joint batch, each BNH[WD].
            target: ``(label, label_sdf)`` of the labelled samples, each ``(num_labeled, N, H[, W, D])``.
            num_labeled: number of labelled samples at the front of the batch; default ``len(label)``.
            unsup_weight: consistency weight w(t).

        Returns:
            ``{"loss", "loss_dice", "loss_sdf", "loss_consistency"}``.
        """
        seg, sdf = pred
        label, label_sdf = target
        n = len(label) if num_labeled is None else num_labeled
        if n != len(label) or n > len(seg):
            raise ValueError(f"`num_labeled`={n} does not match {len(label)} labels and a batch of {len(seg)}.")
        if label.shape != seg[:n].shape or label_sdf.shape != sdf[:n].shape:
            raise ValueError(
                f"Targets {tuple(label.shape)}, {tuple(label_sdf.shape)} do not match the labelled predictions "
                f"{tuple(seg[:n].shape)}, {tuple(sdf[:n].shape)}."
            )
        loss_dice = self.dice(seg[:n], label)
        loss_sdf = torch.mean((sdf[:n] - label_sdf) ** 2)
        loss_consistency = self.consistency(seg, sdf)
        total = loss_dice + self.sdf_weight * loss_sdf + unsup_weight * loss_consistency
        return {"loss": total, "loss_dice": loss_dice, "loss_sdf": loss_sdf, "loss_consistency": loss_consistency}
