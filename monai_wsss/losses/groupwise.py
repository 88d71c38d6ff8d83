"""The loss of group-wise semantic mining: multi-label soft margin before and after the co-attention graph."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["GroupwiseSoftMarginLoss"]


class GroupwiseSoftMarginLoss(_Loss):
    """
    ``(pre_weight * MLSM(pre, y) + MLSM(post, y)) / 2``: the multi-label soft-margin loss (``torch``'s
    ``multilabel_soft_margin_loss``, a mean over classes) of the logits before (``pre``) and after (``post``) the
    graph, each averaged over the images of the batch. For one group of 3 this is exactly the reference's
    ``(0.4 * (sum of 3 pre losses) + (sum of 3 post losses)) / 6``. Input: the dict of
    :py:class:`~monai_wsss.networks.GroupwiseClassifier` (``pre``, ``post``: ``(B, K)`` logits) and multi-hot tags
    ``(B, K)``. Follows the trainer loss contract: returns ``{"loss", "loss_pre", "loss_post"}``, ``"loss"``
    optimised (MONAI's ``SupervisedTrainer`` takes a tensor: use it with ``dict_output=False``, the default, which
    returns the loss tensor alone).

        Li, X., Zhou, T., Li, J., Zhou, Y., Zhang, Z. (2021) Group-Wise Semantic Mining for Weakly Supervised
        Semantic Segmentation. AAAI 2021, https://arxiv.org/abs/2012.05007

    Args:
        pre_weight: weight of the pre-graph term. Defaults to 0.4.
        dict_output: return the dict of terms instead of the loss tensor.
        reduction: ``"mean"`` (default) or ``"sum"`` over the images; ``"none"`` gives ``(B,)`` losses.

    Raises:
        ValueError: a negative ``pre_weight``; in ``forward``, missing ``pre`` / ``post`` or shapes that differ from
            the tags'.

    Example::

        >>> loss = GroupwiseSoftMarginLoss()
        >>> out = {"pre": torch.zeros(3, 2), "post": torch.zeros(3, 2)}
        >>> round(float(loss(out, torch.ones(3, 2))), 4)  # (0.4 + 1) / 2 * log(2)
        0.4852
    """

    def __init__(
        self, pre_weight: float = 0.4, dict_output: bool = False, reduction: LossReduction | str = LossReduction.MEAN
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if pre_weight < 0:
            raise ValueError(f"`pre_weight` must be >= 0, got {pre_weight}.")
        self.pre_weight, self.dict_output = float(pre_weight), bool(dict_output)

    def forward(self, pred: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor | dict:
        if not isinstance(pred, Mapping) or "pre" not in pred or "post" not in pred:
            raise ValueError("`pred` must be the dict of GroupwiseClassifier with 'pre' and 'post' logits.")
        target = target.to(pred["post"].dtype).view(pred["post"].shape[0], -1)
        for key in ("pre", "post"):
            if pred[key].shape != target.shape:
                raise ValueError(f"`{key}` logits {tuple(pred[key].shape)} and tags {tuple(target.shape)} differ.")
        pre = F.multilabel_soft_margin_loss(pred["pre"], target, reduction="none")
        post = F.multilabel_soft_margin_loss(pred["post"], target, reduction="none")
        per_image = (self.pre_weight * pre + post) / 2
        if self.reduction == LossReduction.MEAN.value:
            terms = {"loss": per_image.mean(), "loss_pre": pre.mean(), "loss_post": post.mean()}
        elif self.reduction == LossReduction.SUM.value:
            terms = {"loss": per_image.sum(), "loss_pre": pre.sum(), "loss_post": post.sum()}
        else:
            terms = {"loss": per_image, "loss_pre": pre, "loss_post": post}
        return terms if self.dict_output else terms["loss"]
