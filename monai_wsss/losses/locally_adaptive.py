"""The locally adaptive learning loss: cross-entropy of label groups pooled inside sliding windows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, ensure_tuple_rep
from torch.nn.modules.loss import _Loss

__all__ = ["LocallyAdaptiveLoss", "WeightedSumLoss", "chessboard_gaussian"]


def chessboard_gaussian(window_size: Sequence[int], sigma: float) -> torch.Tensor:
    """
    Window weights ``exp(-d^2 / (2 sigma^2))`` with ``d`` the chessboard (L-infinity) distance of each position from
    the window centre (``(w - 1) / 2`` on each axis, so an even window has no single centre pixel).

    Raises:
        ValueError: ``sigma`` is not positive.
    """
    if sigma <= 0:
        raise ValueError(f"`sigma` must be positive, got {sigma}.")
    axes = [torch.arange(w, dtype=torch.float64) - (w - 1) / 2 for w in window_size]
    grids = torch.meshgrid(*axes, indexing="ij")
    distance = torch.stack([g.abs() for g in grids]).amax(dim=0)
    return torch.exp(-(distance**2) / (2 * sigma**2)).float()


class LocallyAdaptiveLoss(_Loss):
    """
    The locally adaptive learning loss of Guo et al., "Locally Adaptive Learning Loss for Semantic Image
    Segmentation" (arXiv:1802.08290, 2018), in 1D, 2D or 3D.

    Windows of ``window_size`` slide with ``stride`` over the predicted class probabilities. Inside a window, the
    pixels of one ground-truth class form a group; the group's predictions are pooled with Gaussian weights of their
    chessboard distance from the window centre, normalised by the weights' total, and the group's loss is the
    cross-entropy of that pooled distribution against the group's class, ``-log(q_c[c])``. A window's loss is the
    sum over the groups present in it; the window losses of an image are combined by Minkowski pooling,
    ``(mean_w L_w^k)^(1/k)`` over the windows holding at least one labelled pixel (``k = 5`` was the paper's best);
    ``reduction`` combines the images. Pixels whose label is ``ignore_index`` belong to no group, so they get no
    gradient. The paper's window size is not known here (no public code): the defaults are this library's choice.

    Args:
        window_size: window side, an int for every axis or one per axis.
        stride: window step, an int or one per axis (default: half the window).
        sigma: standard deviation of the Gaussian weights in pixels (default: a quarter of the largest side).
        k: Minkowski exponent (>= 1).
        softmax: apply a softmax over channels to ``input`` (logits); otherwise ``input`` holds probabilities.
        ignore_index: label value of pixels outside every group.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per image).
        eps: floor of the pooled probability inside the logarithm.

    Example::

        >>> loss = LocallyAdaptiveLoss(window_size=8, stride=4)
        >>> loss(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 1, 32, 32)))

    Raises:
        ValueError: ``k`` < 1, a non-positive window or stride; at call time, a window larger than the image, or
            ``target`` not one channel of labels with ``input``'s shape.
    """

    def __init__(
        self,
        window_size: Sequence[int] | int = 8,
        stride: Sequence[int] | int | None = None,
        sigma: float | None = None,
        k: float = 5.0,
        softmax: bool = True,
        ignore_index: int | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if k < 1:
            raise ValueError(f"The Minkowski exponent `k` must be at least 1, got {k}.")
        self.window_size, self.stride, self.sigma = window_size, stride, sigma
        for name, value in (("window_size", window_size), ("stride", stride)):
            if value is not None and min([value] if isinstance(value, int) else value) < 1:
                raise ValueError(f"`{name}` must be positive, got {value}.")
        self.k, self.softmax, self.ignore_index, self.eps = float(k), softmax, ignore_index, eps

    def windows(self, spatial_shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...], torch.Tensor]:
        """``(window, stride, weights)`` for an image of ``spatial_shape`` (ValueError if the window is larger)."""
        dims = len(spatial_shape)
        window = tuple(int(w) for w in ensure_tuple_rep(self.window_size, dims))
        stride = self.stride if self.stride is not None else tuple(max(1, w // 2) for w in window)
        stride = tuple(int(s) for s in ensure_tuple_rep(stride, dims))
        if any(w > s for w, s in zip(window, spatial_shape, strict=True)):
            raise ValueError(
                f"The locally adaptive loss window {window} is larger than the image {tuple(spatial_shape)}: "
                "choose a smaller `window_size` (or larger training crops)."
            )
        sigma = self.sigma if self.sigma is not None else max(window) / 4
        return window, stride, chessboard_gaussian(window, sigma)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: ``(B, C, *spatial)`` logits (``softmax=True``) or probabilities.
            target: ``(B, 1, *spatial)`` class indices (or ``(B, *spatial)``).
        """
        if target.ndim == input.ndim - 1:
            target = target.unsqueeze(1)
        if target.shape[1] != 1 or target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
            raise ValueError(
                f"`target` must hold one channel of labels of the input's shape {tuple(input.shape)}, "
                f"got {tuple(target.shape)}."
            )
        dims, num_classes = input.ndim - 2, input.shape[1]
        if dims not in (1, 2, 3):
            raise ValueError(f"Input must have 1-3 spatial dims, got shape {tuple(input.shape)}.")
        window, stride, weights = self.windows(input.shape[2:])
        probs = torch.softmax(input.float(), dim=1) if self.softmax else input.float()
        labels = target.long()
        valid = torch.ones_like(labels, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = labels != self.ignore_index
            labels = torch.where(valid, labels, torch.zeros_like(labels))
        onehot = F.one_hot(labels[:, 0], num_classes).movedim(-1, 1).to(probs.dtype) * valid
        conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
        kernel = weights.to(probs).expand(num_classes, 1, *window)
        # per window and class: pooled probability of the class over its own pixels, and the total weight
        pooled = conv(onehot * probs, kernel, stride=stride, groups=num_classes).flatten(2)
        total = conv(onehot, kernel, stride=stride, groups=num_classes).flatten(2)
        present = total > 0
        ratio = torch.where(present, pooled / total.clamp_min(torch.finfo(total.dtype).tiny), torch.ones_like(total))
        group_loss = -torch.log(ratio.clamp_min(self.eps)) * present
        window_loss = group_loss.sum(dim=1)  # (B, windows)
        counted = present.any(dim=1)
        mean_power = (window_loss.pow(self.k) * counted).sum(dim=1) / counted.sum(dim=1).clamp_min(1)
        per_image = torch.where(mean_power > 0, mean_power.clamp_min(1e-30).pow(1.0 / self.k), mean_power * 0)
        if self.reduction == LossReduction.MEAN.value:
            return per_image.mean()
        if self.reduction == LossReduction.SUM.value:
            return per_image.sum()
        return per_image


class WeightedSumLoss(_Loss):
    """
    ``sum_i weights[i] * losses[i](input, target)``: e.g. Dice + cross-entropy plus a weighted
    :py:class:`LocallyAdaptiveLoss`, composed in a config.

    Args:
        losses: callables ``(input, target) -> scalar``.
        weights: one per loss (default 1 each).

    Raises:
        ValueError: no loss, or a different number of weights.
    """

    def __init__(self, losses: Sequence[torch.nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("`losses` is empty.")
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if len(weights) != len(losses):
            raise ValueError(f"{len(losses)} losses but {len(weights)} weights.")
        self.losses = torch.nn.ModuleList(losses)
        self.weights = weights

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(input, target) for w, loss in zip(self.weights, self.losses, strict=True))

