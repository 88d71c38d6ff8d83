"""Seeds (class localisation maps) to pseudo-labels: normalise, add a background score, argmax."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

__all__ = ["seeds_to_pseudo_label", "SeedsToPseudoLabel"]


def _normalise(maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    maps = maps.clamp_min(0)
    nd = maps.ndim - 2
    peak = maps.flatten(2).max(2)[0].view(*maps.shape[:2], *[1] * nd)
    return maps / (peak + eps)


def seeds_to_pseudo_label(
    maps: torch.Tensor,
    labels: torch.Tensor,
    bg_threshold: float = 0.25,
    bg_power: float | None = None,
    normalise: bool = True,
) -> torch.Tensor:
    """
    Pseudo-label from per-class localisation maps (CAM, AdvCAM, PRM, ...). Each map of a present class is rectified
    and normalised to [0, 1] by its maximum; maps of absent classes are dropped; the background score is a constant
    ``bg_threshold`` or, with ``bg_power`` (the power form used with CAM / AdvCAM seeds),
    ``(1 - max_c A_c) ** bg_power``; the label is the argmax over (background, classes), 0 for background and
    ``c + 1`` for class ``c``. An image without any positive class is all background (a valid negative).

    Args:
        maps: ``(B, K, *spatial)`` maps (or ``(K, *spatial)`` for one image).
        labels: ``(B, K)`` multi-hot image-level labels (or ``(K,)``), values in {0, 1}.
        bg_threshold: constant background score. Defaults to 0.25.
        bg_power: if given, use ``(1 - max_c A_c) ** bg_power`` instead of the constant.
        normalise: divide each map by its maximum (set False if the maps are already in [0, 1]).

    Returns:
        ``(B, 1, *spatial)`` long labels (``(1, *spatial)`` for one image).
    """
    single = maps.ndim >= 2 and labels.ndim == 1
    if single:
        maps, labels = maps[None], labels[None]
    if labels.ndim != 2 or maps.shape[:2] != labels.shape:
        raise ValueError(
            f"`labels` must be (B, K) matching `maps` (B, K, *spatial); got {tuple(labels.shape)} and "
            f"{tuple(maps.shape)}."
        )
    if not torch.all((labels == 0) | (labels == 1)):
        raise ValueError("`labels` must be multi-hot (values in {0, 1}).")
    if bg_power is None and not 0.0 <= bg_threshold <= 1.0:
        raise ValueError(f"`bg_threshold` must be in [0, 1], got {bg_threshold}.")
    maps = maps.float()
    fg = _normalise(maps) if normalise else maps.clamp(0, 1)
    nd = maps.ndim - 2
    fg = fg * labels.to(fg.dtype).view(*labels.shape, *[1] * nd)
    if bg_power is not None:
        bg = (1 - fg.max(1, keepdim=True)[0]) ** bg_power
    else:
        bg = torch.full_like(fg[:, :1], bg_threshold)
    out = torch.cat([bg, fg], 1).argmax(1, keepdim=True)
    return out[0] if single else out


class SeedsToPseudoLabel(Transform):
    """
    Array transform form of :py:func:`seeds_to_pseudo_label` for one image: channel-first maps ``(K, *spatial)`` and
    the image-level labels ``(K,)`` give a ``(1, *spatial)`` label map (0 background, ``c + 1`` class ``c``).

    Args:
        bg_threshold, bg_power, normalise: see :py:func:`seeds_to_pseudo_label`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, bg_threshold: float = 0.25, bg_power: float | None = None, normalise: bool = True) -> None:
        self.bg_threshold = bg_threshold
        self.bg_power = bg_power
        self.normalise = normalise

    def __call__(self, img: NdarrayOrTensor, labels: NdarrayOrTensor) -> NdarrayOrTensor:
        maps_t = convert_data_type(img, torch.Tensor)[0]
        labels_t = convert_data_type(labels, torch.Tensor, device=maps_t.device)[0].reshape(-1)
        out = seeds_to_pseudo_label(maps_t, labels_t, self.bg_threshold, self.bg_power, self.normalise)
        return convert_to_dst_type(out, img)[0]
