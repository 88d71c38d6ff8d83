"""Agreement and diversity losses of the co-training ensemble (Peng et al., Pattern Recognition 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from ..transforms.uncertainty import entropy

__all__ = ["AdversarialDiversityLoss", "JensenShannonDivergenceLoss", "generalized_jsd", "kl_divergence"]

_EPS = 1e-8  # the probability floor of the JSD entropies (the bundle figures were measured with it)


def _stack(probs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    p = probs if isinstance(probs, torch.Tensor) else torch.stack(list(probs), dim=0)
    if p.ndim < 3:
        raise ValueError(f"Expected S probability maps of shape (S, B, C, ...), got shape {tuple(p.shape)}.")
    return p


def generalized_jsd(probs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """
    Per-voxel generalised Jensen-Shannon divergence of S class-probability maps,

        JSD(p_1, ..., p_S) = H(1/S sum_s p_s) - 1/S sum_s H(p_s),   H(p) = -sum_c p_c log p_c,

    in nats, between 0 (all maps equal) and log S. Also the ensemble's disagreement (uncertainty) map.

    Args:
        probs: (S, B, C, spatial...) tensor or a sequence of S (B, C, spatial...) tensors, softmax over C.

    Returns:
        (B, spatial...) tensor.
    """
    p = _stack(probs)
    return entropy(p.mean(0), dim=1, eps=_EPS) - entropy(p, dim=2, eps=_EPS).mean(0)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-voxel ``KL(P || Q) = sum_c P_c (log P_c - log Q_c)`` with ``P = softmax(p_logits)``,
    ``Q = softmax(q_logits)`` over dim 1; returns (B, spatial...)."""
    log_p = F.log_softmax(p_logits, dim=1)
    log_q = F.log_softmax(q_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


class JensenShannonDivergenceLoss(_Loss):
    """
    Agreement loss of the co-training ensemble: the generalised Jensen-Shannon divergence of the S members'
    softmax maps on an unlabelled batch, averaged over voxels and samples (see :py:func:`generalized_jsd`).

        Peng, J., Estrada, G., Pedersoli, M., Desrosiers, C. (2020) Deep co-training for semi-supervised image
        segmentation. Pattern Recognition 107, 107269 (the co-training loss L_cot).

    Args:
        softmax: apply softmax over the channel dim to the inputs (pass logits); False when they are probabilities.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the (B, spatial...) map).
    """

    def __init__(self, softmax: bool = True, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"Unsupported reduction '{reduction}': use 'mean', 'sum' or 'none'.")
        self.softmax = softmax

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """``inputs``: S tensors (B, C, spatial...) (a sequence or stacked on dim 0), S >= 2."""
        p = _stack(inputs)
        if p.shape[0] < 2:
            raise ValueError(f"The Jensen-Shannon agreement needs at least 2 members, got {p.shape[0]}.")
        if self.softmax:
            p = torch.softmax(p, dim=2)
        jsd = generalized_jsd(p)
        if self.reduction == "mean":
            return jsd.mean()
        if self.reduction == "sum":
            return jsd.sum()
        return jsd


class AdversarialDiversityLoss(_Loss):
    """
    Diversity loss of the co-training ensemble: for an ordered pair (i, j), i != j, with ``x_adv`` an adversarial
    example made against model i,

        L_div(i, j) = KL( p_j(x_adv) || p_i(x) ),

    averaged over voxels and samples: model j should keep predicting what model i predicts on the clean image even
    where model i itself is fooled, which keeps the members different (Peng et al., Pattern Recognition 2020, the
    diversity loss L_dif). Gradients flow into both distributions; ``x_adv`` is a constant.

    ``forward(adv_logits_j, clean_logits_i)`` takes logits (B, C, spatial...).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"Unsupported reduction '{reduction}': use 'mean', 'sum' or 'none'.")

    def forward(self, adv_logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if adv_logits.shape != clean_logits.shape:
            raise ValueError(
                f"Adversarial and clean predictions differ in shape: {tuple(adv_logits.shape)} vs "
                f"{tuple(clean_logits.shape)}."
            )
        kl = kl_divergence(adv_logits, clean_logits)
        if self.reduction == "mean":
            return kl.mean()
        if self.reduction == "sum":
            return kl.sum()
        return kl
