"""Feature uncertainty of softmax probabilities, per pixel and per region."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, look_up_option

__all__ = [
    "UNCERTAINTY_MODES",
    "entropy",
    "margin",
    "pairwise_entropy",
    "region_mean",
    "PixelUncertainty",
    "PixelUncertaintyd",
    "PixelUncertaintyD",
    "PixelUncertaintyDict",
]

_EPS = 1e-12


def entropy(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """
    Shannon entropy ``H(p) = -sum_k p_k log p_k`` (natural log, ``0 log 0 = 0``) along the class axis ``dim``: the
    feature uncertainty of Konyushkova et al. (ICCV 2015, the entropy criterion; CVIU 2019, Sec. 4, "Feature
    uncertainty"). It is 0 for a one-hot vector and ``log K`` for the uniform one.
    """
    p = probs.clamp_min(0)
    return -(p * torch.log(p.clamp_min(_EPS))).sum(dim)


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


def region_mean(values: NdarrayOrTensor, regions: NdarrayOrTensor, num_regions: int | None = None) -> NdarrayOrTensor:
    """
    Mean of ``values`` over each region of an integer region map (ids ``0..R-1``, any spatial shape; the map may
    carry a leading channel axis of size 1). ``values`` shaped like the map gives ``(R,)`` (a size-1 leading axis on
    both is dropped); ``values`` shaped ``(C, *spatial)`` gives ``(R, C)``. Empty regions give 0. Computed by bincount
    (``torch.index_add``), so it runs on the device of ``values``; the output type follows ``values``.
    """
    v = convert_to_tensor(values, track_meta=False)
    r = convert_to_tensor(regions, track_meta=False).to(device=v.device).long()
    if r.ndim == v.ndim and r.shape[0] == 1 and v.shape[0] == 1:
        v, r = v[0], r[0]
    elif r.ndim == v.ndim and r.shape[0] == 1:
        r = r[0]
    if r.ndim == v.ndim:
        vv = v.reshape(1, -1)
        squeeze = True
    elif r.ndim == v.ndim - 1:
        vv = v.reshape(v.shape[0], -1)
        squeeze = False
    else:
        raise ValueError(f"`values` {tuple(v.shape)} and `regions` {tuple(r.shape)} do not match.")
    if vv.shape[1] != r.numel():
        raise ValueError(f"`values` {tuple(v.shape)} and `regions` {tuple(r.shape)} have different spatial sizes.")
    flat = r.reshape(-1)
    if flat.numel() and int(flat.min()) < 0:
        raise ValueError("`regions` must hold non-negative ids.")
    n = int(num_regions) if num_regions is not None else (int(flat.max()) + 1 if flat.numel() else 0)
    vv = vv.to(torch.float64 if vv.dtype == torch.float64 else torch.float32)
    sums = torch.zeros(n, vv.shape[0], dtype=vv.dtype, device=vv.device).index_add_(0, flat, vv.T)
    counts = torch.bincount(flat, minlength=n).to(vv.dtype).clamp_min(1)
    out = sums / counts[:, None]
    out = out[:, 0] if squeeze else out
    return convert_to_dst_type(out, values)[0] if isinstance(values, np.ndarray) else out


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
    Dictionary-based wrapper of :py:class:`monai_wsss.active.PixelUncertainty`: writes the uncertainty map of
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
