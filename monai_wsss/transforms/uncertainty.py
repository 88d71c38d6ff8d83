"""Feature uncertainty of softmax probabilities, per pixel and per region."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, look_up_option

__all__ = [
    "UNCERTAINTY_MODES",
    "entropy",
    "margin",
    "pairwise_entropy",
    "PixelUncertainty",
    "PixelUncertaintyd",
    "PixelUncertaintyD",
    "PixelUncertaintyDict",
]

_EPS = 1e-12


def entropy(probs: torch.Tensor, dim: int = 0, eps: float = _EPS) -> torch.Tensor:
    """
    Shannon entropy ``H(p) = -sum_k p_k log p_k`` (natural log, ``0 log 0 = 0``) along the class axis ``dim``: the
    feature uncertainty of Konyushkova et al. (ICCV 2015, the entropy criterion; CVIU 2019, Sec. 4, "Feature
    uncertainty"), and the entropies of the co-training JSD (Peng et al., Pattern Recognition 2020). It is 0 for a
    one-hot vector and ``log K`` for the uniform one. ``eps`` floors the probability inside the log (default
    ``1e-12``); a differentiable loss keeps its gradient ``-(log p + 1)`` bounded with a larger floor.
    """
    p = probs.clamp_min(0)
    return -(p * torch.log(p.clamp_min(eps))).sum(dim)


def margin(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """
    Margin uncertainty ``1 - (p_(1) - p_(2))`` with ``p_(1) >= p_(2)`` the two largest class probabilities along
    ``dim`` (the min-margin criterion used for the multi-class case in Konyushkova et al., CVIU 2019): 0 for a
    confident one-hot prediction, 1 when the two best classes tie. Needs at least 2 classes.
    """
    if probs.shape[dim] < 2:
        raise ValueError(f"`margin` needs at least 2 classes along dim {dim}, got {probs.shape[dim]}.")
    top2 = torch.topk(probs, 2, dim=dim).values
    return 1.0 - (top2.select(dim, 0) - top2.select(dim, 1))


def pairwise_entropy(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """
    Entropy of the two most likely classes, renormalised: with ``q = p_(1) / (p_(1) + p_(2))``,
    ``-q log q - (1 - q) log(1 - q)``. This is our reading of the "pairwise entropy" multi-class criterion named in
    METHODS.md section 4 for Konyushkova et al. (CVIU 2019): it measures the confusion between the two competing
    classes only, ignoring mass spread over the others (unverified against the paper's exact formula). For two
    classes it equals :py:func:`entropy`.
    """
    if probs.shape[dim] < 2:
        raise ValueError(f"`pairwise_entropy` needs at least 2 classes along dim {dim}, got {probs.shape[dim]}.")
    top2 = torch.topk(probs.clamp_min(0), 2, dim=dim).values
    q = top2 / top2.sum(dim, keepdim=True).clamp_min(_EPS)
    return entropy(q, dim=dim)


UNCERTAINTY_MODES = {"entropy": entropy, "margin": margin, "pairwise_entropy": pairwise_entropy}


class PixelUncertainty(Transform):
    """
    Per-pixel feature uncertainty of channel-first class probabilities ``(K, H, W[, D])`` (softmax output, MC
    dropout or TTA average), returned as ``(1, H, W[, D])``. Modes: ``"entropy"`` (Shannon entropy),
    ``"margin"`` (``1 - (p_(1) - p_(2))``), ``"pairwise_entropy"`` (entropy of the two best classes), see the
    functions of the same name.

        Konyushkova, K., Sznitman, R., Fua, P. (2019) Geometry in Active Learning for Binary and Multi-class Image
        Segmentation. CVIU 2019 (feature uncertainty; multi-class criteria).

    Args:
        mode: one of ``"entropy"``, ``"margin"``, ``"pairwise_entropy"``.

    Example::

        >>> PixelUncertainty("margin")(torch.tensor([[[0.5]], [[0.5]]]))
        tensor([[[1.]]])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, mode: str = "entropy") -> None:
        self.fn = look_up_option(mode, UNCERTAINTY_MODES)  # returns the function
        self.mode = mode

    def __call__(self, probs: NdarrayOrTensor) -> NdarrayOrTensor:
        p = convert_to_tensor(probs, track_meta=False, dtype=torch.float32)
        if p.ndim < 2:
            raise ValueError(f"`probs` must be channel-first (K, *spatial), got shape {tuple(p.shape)}.")
        return convert_to_dst_type(self.fn(p, dim=0)[None], probs, dtype=torch.float32)[0]


class PixelUncertaintyd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.PixelUncertainty`: writes the uncertainty map of
    ``key`` to ``f"{key}_{postfix}"``.

    Args:
        keys: keys of the channel-first probabilities.
        mode: as :py:class:`PixelUncertainty`.
        postfix: suffix of the output key (``pred`` -> ``pred_uncertainty``).
        allow_missing_keys: skip missing keys.
    """

    backend = PixelUncertainty.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "entropy",
        postfix: str = "uncertainty",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = PixelUncertainty(mode)
        self.postfix = postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.postfix}"] = self.converter(d[key])
        return d


PixelUncertaintyD = PixelUncertaintyDict = PixelUncertaintyd
