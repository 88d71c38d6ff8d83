"""Array transforms of monai_wsss (channel-first, numpy or torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import Transform
from monai.transforms.post.array import Ensemble
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, get_equivalent_dtype

__all__ = ["DecodeLabelCodes", "EnsembleDisagreement", "SignedDistanceMap", "OtsuForeground", "QuantizeLabels"]


class SignedDistanceMap(Transform):
    """
    Normalised signed distance map (SDM) of a channel-first binary mask, the level-set target of dual-task
    consistency: for each channel, with ``d_in`` the distance of a foreground voxel to the background and ``d_out``
    the distance of a background voxel to the foreground,

        SDM = d_out / max(d_out) - d_in / max(d_in),   and 0 on the foreground's inner boundary,

    so values are negative inside, positive outside, in [-1, 1], and 0 on the boundary. A channel without foreground
    gives all zeros (the reference's convention); a channel that is all foreground gives -1 everywhere (inside, no
    boundary in view). Distances are scipy's exact Euclidean distance transform
    (``scipy.ndimage.distance_transform_edt``, what MONAI's :py:class:`monai.transforms.DistanceTransformEDT` calls
    on the CPU), the inside one on the foreground's bounding box only (exact, see :py:func:`_signed_distance`).
    Multi-class targets are handled channel by channel (one binary mask per channel, e.g. one-hot without
    background).

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
        self.sampling = sampling

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        mask = convert_to_tensor(img, track_meta=False) > 0
        if mask.ndim not in (3, 4):
            raise ValueError(f"`img` must be channel-first 2D or 3D (C, H, W[, D]), got shape {tuple(mask.shape)}.")
        masks = mask.detach().cpu().numpy()
        out = np.zeros(masks.shape, dtype=np.float32)
        for c, fg in enumerate(masks):
            if not fg.any():
                continue
            if fg.all():
                out[c] = -1.0
                continue
            out[c] = _signed_distance(fg, self.sampling)
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]


def _signed_distance(fg: np.ndarray, sampling: float | Sequence[float] | None) -> np.ndarray:
    """The normalised SDM of one spatial boolean mask holding both classes (see :py:class:`SignedDistanceMap`).

    Same values as MONAI's ``DistanceTransformEDT`` over the whole mask (scipy's exact EDT), computed with less work:
    the inside distance only on the foreground's bounding box grown by one voxel. That is exact: the grown box's rim
    is background wherever it lies in the image, and the nearest background voxel of a voxel in the box is never
    outside the box (projecting an outside voxel onto the box lands on the rim and comes no farther).
    """
    from scipy.ndimage import distance_transform_edt

    d_out = distance_transform_edt(~fg, sampling=sampling).astype(np.float32)  # background -> nearest foreground
    box = _grown_box(fg)
    d_in = np.zeros(fg.shape, dtype=np.float32)
    d_in[box] = distance_transform_edt(fg[box], sampling=sampling)  # foreground -> nearest background
    sdm = d_out / d_out.max() - d_in / d_in.max()
    sdm[_inner_boundary(fg)] = 0.0
    return sdm


def _grown_box(fg: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the True voxels of ``fg`` grown by one voxel on each side (clipped to the array)."""
    box = []
    for axis, n in enumerate(fg.shape):
        hit = np.flatnonzero(fg.any(axis=tuple(a for a in range(fg.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, n)))
    return tuple(box)


def _inner_boundary(fg: np.ndarray) -> np.ndarray:
    """Foreground voxels of a spatial boolean array with a face-adjacent background voxel (voxels outside the image
    do not count)."""
    boundary = np.zeros_like(fg)
    for axis, n in enumerate(fg.shape):
        if n < 2:
            continue
        lo = fg[(slice(None),) * axis + (slice(0, n - 1),)]
        hi = fg[(slice(None),) * axis + (slice(1, n),)]
        boundary[(slice(None),) * axis + (slice(1, n),)] |= hi & ~lo
        boundary[(slice(None),) * axis + (slice(0, n - 1),)] |= lo & ~hi
    return boundary


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
