"""Partial-label loss: supervision only where the annotator has given labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["PartialLabelLoss"]


class PartialLabelLoss(_Loss):
    """
    Segmentation loss on partially annotated volumes (the retraining step of active learning, Konyushkova et al.,
    ICCV 2015 / CVIU 2019: the classifier is retrained on the regions labelled so far). Input layout: logits
    ``BNH[WD]``, integer target ``B1H[WD]`` holding ``ignore_value`` on unannotated voxels (as written by
    :py:class:`monai_wsss.active.AnnotationState`), optionally an explicit ``mask`` ``B1H[WD]`` (1 = annotated),
    which is intersected with ``target != ignore_value``.

    The loss is ``ce_weight * CE + dice_weight * Dice`` where CE is the voxel-wise cross-entropy averaged over the
    annotated voxels only, and Dice is MONAI's :py:class:`monai.losses.MaskedDiceLoss` (softmax, one-hot target)
    restricted to the same mask. Unannotated voxels contribute neither to the value nor to the gradients; with no
    annotated voxel at all the loss is 0 (still differentiable).

    MONAI's generic :py:class:`monai.losses.MaskedLoss` is not used for the CE term: it multiplies logits and target
    by the mask, so unannotated voxels become class-0 targets with zero logits; their gradients vanish, but each one
    still adds the constant ``log N`` to the mean, diluting the loss by the unannotated fraction.

    Args:
        ce_weight: weight of the masked cross-entropy.
        dice_weight: weight of the masked Dice loss (0 disables it).
        ignore_value: target value of unannotated voxels.
        reduction: ``"mean"`` (over annotated voxels), ``"sum"`` (over annotated voxels) or ``"none"`` (the masked
            voxel-wise CE map ``B1H[WD]``, only with ``dice_weight=0``).

    Example::

        >>> loss = PartialLabelLoss()
        >>> logits = torch.zeros(1, 2, 2, 2, requires_grad=True)
        >>> target = torch.tensor([[[[0, -1], [-1, -1]]]])
        >>> round(float(loss(logits, target)), 4)  # log 2 on the one annotated voxel
        0.6931
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 0.0,
        ignore_value: int = -1,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight == 0:
            raise ValueError(
                f"weights must be >= 0 and not both 0, got ce_weight={ce_weight}, dice_weight={dice_weight}."
            )
        if self.reduction == LossReduction.NONE.value and dice_weight > 0:
            raise ValueError("Incompatible values: reduction='none' with dice_weight > 0 (Dice is not voxel-wise).")
        self.ce_weight, self.dice_weight = float(ce_weight), float(dice_weight)
        self.ignore_value = int(ignore_value)
        self.dice = MaskedDiceLoss(softmax=True, to_onehot_y=True) if dice_weight > 0 else None

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if target.ndim == input.ndim - 1:
            target = target.unsqueeze(1)
        if target.shape[1] != 1 or target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
            raise ValueError(
                f"`target` must be B1H[WD] matching `input` {tuple(input.shape)}, got {tuple(target.shape)}."
            )
        valid = target != self.ignore_value
        if mask is not None:
            valid = valid & (mask.to(device=target.device) > 0)
        clean = torch.where(valid, target, torch.zeros_like(target)).long()
        fmask = valid.to(input.dtype)
        ce = F.cross_entropy(input, clean[:, 0], reduction="none").unsqueeze(1) * fmask
        if self.reduction == LossReduction.NONE.value:
            return ce
        n = fmask.sum()
        if self.reduction == LossReduction.SUM.value:
            out = self.ce_weight * ce.sum()
        else:
            out = self.ce_weight * ce.sum() / n.clamp_min(1.0)
        if self.dice is not None:
            if n > 0:
                out = out + self.dice_weight * self.dice(input, clean, mask=fmask)
        return out + 0.0 * input.sum() if n == 0 else out
