"""Array transforms of monai_wsss (channel-first, numpy or torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import DistanceTransformEDT, Transform
from monai.transforms.post.array import Ensemble
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, get_equivalent_dtype

__all__ = ["DecodeLabelCodes", "EnsembleDisagreement", "SignedDistanceMap", "OtsuForeground", "QuantizeLabels"]


def _inner_boundary(mask: torch.Tensor) -> torch.Tensor:
    """Foreground voxels with a face-adjacent background voxel (voxels outside the image do not count)."""
    boundary = torch.zeros_like(mask)
    for axis in range(1, mask.ndim):
        n = mask.shape[axis]
        if n < 2:
            continue
        lo, hi = mask.narrow(axis, 0, n - 1), mask.narrow(axis, 1, n - 1)
        boundary.narrow(axis, 1, n - 1).logical_or_(hi & ~lo)
        boundary.narrow(axis, 0, n - 1).logical_or_(lo & ~hi)
    return boundary


class SignedDistanceMap(Transform):
    """
    Normalised signed distance map (SDM) of a channel-first binary mask, the level-set target of dual-task
    consistency: for each channel, with ``d_in`` the distance of a foreground voxel to the background and ``d_out``
    the distance of a background voxel to the foreground,

        SDM = d_out / max(d_out) - d_in / max(d_in),   and 0 on the foreground's inner boundary,

    so values are negative inside, positive outside, in [-1, 1], and 0 on the boundary. A channel without foreground
    gives all zeros (the reference's convention); a channel that is all foreground gives -1 everywhere (inside, no
    boundary in view). Distances come from MONAI's :py:class:`monai.transforms.DistanceTransformEDT`. Multi-class
    targets are handled channel by channel (one binary mask per channel, e.g. one-hot without background).

    The map depends on the field of view: compute it after cropping and flipping.

        Luo, X., Chen, J., Song, T., Wang, G. (2021) Semi-supervised Medical Image Segmentation through Dual-task
        Consistency. AAAI 2021 (Sec. "Dual-task consistency", the SDF definition, Eq. 1).

    Args:
        sampling: voxel spacing passed to the distance transform; ``None`` means unit spacing (as the reference).

    Example::

        >>> SignedDistanceMap()(torch.tensor([[[0, 1, 1, 1, 0, 0]]]))  # inside < 0, boundary 0, outside > 0
        tensor([[[ 0.5000,  0.0000, -1.0000,  0.0000,  0.5000,  1.0000]]])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, sampling: float | Sequence[float] | None = None) -> None:
        self.edt = DistanceTransformEDT(sampling=sampling)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        mask = convert_to_tensor(img, track_meta=False) > 0
        if mask.ndim not in (3, 4):
            raise ValueError(f"`img` must be channel-first 2D or 3D (C, H, W[, D]), got shape {tuple(mask.shape)}.")
        out = torch.zeros(mask.shape, dtype=torch.float32)
        for c in range(mask.shape[0]):
            fg = mask[c : c + 1]
            if not fg.any():
                continue
            if fg.all():
                out[c] = -1.0
                continue
            d_in = convert_to_tensor(self.edt(fg.to(torch.uint8)), dtype=torch.float32, track_meta=False).cpu()
            d_out = convert_to_tensor(self.edt((~fg).to(torch.uint8)), dtype=torch.float32, track_meta=False).cpu()
            sdm = d_out / d_out.max() - d_in / d_in.max()
            sdm[_inner_boundary(fg.cpu())] = 0.0
            out[c] = sdm[0]
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]


class OtsuForeground(Transform):
    """
    Trivial segmentation baseline: threshold each channel of a channel-first image at its Otsu threshold
    (``skimage.filters.threshold_otsu`` over the whole volume). Combine with
    :py:class:`monai.transforms.KeepLargestConnectedComponent` for the "Otsu + largest component" baseline.

        Otsu, N. (1979) A Threshold Selection Method from Gray-Level Histograms. IEEE Trans. SMC 9(1).
    """

    backend = [TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        from skimage.filters import threshold_otsu

        arr = np.asarray(convert_to_tensor(img, track_meta=False).detach().cpu().numpy(), dtype=np.float32)
        out = np.stack([(c > threshold_otsu(c)) if c.max() > c.min() else np.zeros_like(c, bool) for c in arr])
        return convert_to_dst_type(out.astype(np.float32), img)[0]


class EnsembleDisagreement(Ensemble, Transform):
    """
    Uncertainty map of an ensemble: the per-voxel generalised Jensen-Shannon divergence of the members'
    class-probability maps, ``H(mean_s p_s) - mean_s H(p_s)`` in nats (0 where all members agree, at most
    ``log S``); the co-training ensemble's agreement term (Peng et al., Pattern Recognition 2020) read as a map.

    Input: a sequence of S channel-first probability maps (C, spatial...) or one tensor (S, C, spatial...); a
    single-channel (sigmoid) map is read as ``[1 - p, p]``. Output: (1, spatial...), the type of the input.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, img: Sequence[NdarrayOrTensor] | NdarrayOrTensor) -> NdarrayOrTensor:
        from monai_wsss.losses.cotraining import generalized_jsd

        p = self.get_stacked_torch(img).float()
        if p.shape[1] == 1:
            p = torch.cat([1.0 - p, p], dim=1)
        out = generalized_jsd(p.unsqueeze(1))  # members as dim 0, a batch of one
        return self.post_convert(out, img)


class QuantizeLabels(Transform):
    """
    Map an intensity-coded label image to class indices: each value ``v`` becomes the number of ``thresholds``
    that are ``<= v``. For masks stored as grey levels (e.g. blood-smear masks saved as 0 / 128 / 255, where a few
    stray values from resampling or compression must fall into the nearest class), thresholds half-way between the
    codes give ``[64, 192]``: 0 -> 0, 50 -> 0, 128 -> 1, 255 -> 2.

    Works on any shape; the output keeps the input's type, device and (for a ``MetaTensor``) its metadata.

    Args:
        thresholds: strictly increasing class boundaries; ``len(thresholds) + 1`` classes.
        dtype: dtype of the output, numpy or torch (the equivalent one of the input's type is used).
            Defaults to ``np.uint8``.

    Example::

        >>> QuantizeLabels([64, 192])(np.array([[0, 50, 128, 200, 255]]))
        array([[0, 0, 1, 2, 2]], dtype=uint8)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, thresholds: Sequence[float], dtype: DtypeLike | torch.dtype = np.uint8) -> None:
        th = np.asarray(thresholds, dtype=np.float64).ravel()
        if th.size == 0:
            raise ValueError("`thresholds` must hold at least one value.")
        if not np.isfinite(th).all() or (th.size > 1 and not (np.diff(th) > 0).all()):
            raise ValueError(f"`thresholds` must be finite and strictly increasing, got {list(thresholds)}.")
        np_dtype = np.dtype(get_equivalent_dtype(dtype, np.ndarray))
        if np_dtype.kind in "ui" and np.iinfo(np_dtype).max < th.size:
            raise ValueError(f"`dtype` {np_dtype} cannot hold the {th.size + 1} classes of `thresholds`.")
        self.thresholds = torch.as_tensor(th)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        th = self.thresholds.to(x.device)
        # right=True: index i with th[i - 1] <= v < th[i], i.e. the number of thresholds <= v
        out = torch.bucketize(x.to(torch.float64), th, right=True)
        return convert_to_dst_type(out, img, dtype=self.dtype)[0]


class DecodeLabelCodes(Transform):
    """
    Class indices ``0..num_classes-1`` from a mask that is either already a label map or stores its classes as
    evenly spaced grey codes over ``0..max_code`` (0/255 for two classes, 0/128/255 for three, as in many microscopy
    and EM datasets): a mask whose values all are integers below ``num_classes`` is returned as it is (cast to
    ``dtype``); one that reaches the first non-background code is decoded by :py:class:`QuantizeLabels` with
    thresholds half-way between the codes (``(i + 0.5) * max_code / (num_classes - 1)``), so stray values from
    compression fall into the nearest class; any other mask (e.g. a stray value 5 in a 0/1 mask) is returned as it
    is, so that validation reports its values.

    Args:
        num_classes: classes, background included (>= 2).
        max_code: grey code of the last class.
        dtype: output dtype.
    """

    backend = QuantizeLabels.backend

    def __init__(self, num_classes: int, max_code: float = 255, dtype: DtypeLike | torch.dtype = np.uint8) -> None:
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
        step = float(max_code) / (num_classes - 1)
        self.num_classes = int(num_classes)
        self.dtype = dtype
        self.quantize = QuantizeLabels([(i + 0.5) * step for i in range(num_classes - 1)], dtype=dtype)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        if bool(((x >= 0) & (x < self.num_classes) & (x == torch.round(x))).all()):
            return convert_to_dst_type(x, img, dtype=self.dtype)[0]
        if x.numel() and float(x.max()) >= float(self.quantize.thresholds[0]):
            return self.quantize(img)
        return img  # neither a label map nor grey codes (e.g. a stray class 5 in a 0/1 mask): left for validation
