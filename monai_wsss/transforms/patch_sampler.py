"""The "mix" step of Mix-and-Match: patches of random size, resized to one size, each labelled by its majority class."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple_rep

__all__ = [
    "RandMajorityClassPatches",
    "RandMajorityClassPatchesD",
    "RandMajorityClassPatchesDict",
    "RandMajorityClassPatchesd",
    "majority_class",
]


def majority_class(label: NdarrayOrTensor) -> int:
    """The most frequent integer value of ``label`` (ties: the smallest value).

    Raises:
        ValueError: ``label`` is empty or holds negative values.
    """
    values = convert_to_tensor(label, track_meta=False).reshape(-1).round().long()
    if values.numel() == 0:
        raise ValueError("`label` is empty: no majority class.")
    if int(values.min()) < 0:
        raise ValueError(f"`label` holds negative class values (min {int(values.min())}).")
    return int(torch.bincount(values).argmax())


class RandMajorityClassPatches(Randomizable, Transform):
    """
    Sample ``num_patches`` patches from a channel-first image and its label map (``C, *spatial``, 2D or 3D): each of
    a random side drawn uniformly from ``[min_size, max_size]`` (the same on every axis, clipped to the image),
    resized to ``roi_size``, and labelled by the majority class of its label voxels (before resizing). At most
    ``round(max_background_fraction * num_patches)`` patches are drawn anywhere in the image (they may be background);
    the others are centred on a random foreground voxel and redrawn (up to ``max_attempts`` times) until their
    majority class is foreground, so the share of background patches is bounded unless the image has (almost) no
    foreground.

        Zhan, X., Liu, Z., Luo, P., Tang, X., Loy, C. C. (2018) Mix-and-Match Tuning for Self-Supervised Semantic
        Segmentation. AAAI 2018. (10 patches per image, side 64-256 px resized to 128, about 10% background.)

    Args:
        num_patches: patches per image.
        min_size: smallest side (voxels).
        max_size: largest side (voxels).
        roi_size: the size every patch is resized to (one int or one per spatial axis).
        max_background_fraction: share of patches drawn without regard to the label.
        background: the background class value.
        max_attempts: redraws of a foreground patch whose majority class is background.
        mode: interpolation of the image patches (``"area"``, ``"bilinear"``, ``"trilinear"``, ...).

    Returns:
        ``(patches, classes)``: ``(num_patches, C, *roi_size)`` float tensor and ``(num_patches,)`` long tensor.

    Raises:
        ValueError: ``num_patches`` < 1, sizes < 1 or ``min_size > max_size``, a fraction outside [0, 1]; at call:
            image and label spatial shapes differ.

    Example::

        >>> sampler = RandMajorityClassPatches(num_patches=10, min_size=8, max_size=32, roi_size=16)
        >>> patches, classes = sampler(torch.rand(1, 64, 64), torch.zeros(1, 64, 64))
        >>> patches.shape, classes.shape
        (torch.Size([10, 1, 16, 16]), torch.Size([10]))
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        num_patches: int = 10,
        min_size: int = 64,
        max_size: int = 256,
        roi_size: int | Sequence[int] = 128,
        max_background_fraction: float = 0.1,
        background: int = 0,
        max_attempts: int = 10,
        mode: str = "area",
    ) -> None:
        if num_patches < 1:
            raise ValueError(f"`num_patches` must be >= 1, got {num_patches}.")
        if min_size < 1 or max_size < min_size:
            raise ValueError(f"Need 1 <= `min_size` <= `max_size`, got min_size={min_size}, max_size={max_size}.")
        if not 0.0 <= max_background_fraction <= 1.0:
            raise ValueError(f"`max_background_fraction` must be in [0, 1], got {max_background_fraction}.")
        if max_attempts < 1:
            raise ValueError(f"`max_attempts` must be >= 1, got {max_attempts}.")
        self.num_patches, self.min_size, self.max_size = int(num_patches), int(min_size), int(max_size)
        self.roi_size = roi_size
        self.max_background_fraction = float(max_background_fraction)
        self.background, self.max_attempts, self.mode = int(background), int(max_attempts), mode

    def randomize(self, data=None) -> None:
        pass

    def _box(self, shape: Sequence[int], centre: Sequence[int] | None) -> tuple[slice, ...]:
        side = int(self.R.randint(self.min_size, self.max_size + 1))
        box = []
        for axis, dim in enumerate(shape):
            s = min(side, int(dim))
            c = int(self.R.randint(0, dim)) if centre is None else int(centre[axis])
            start = min(max(c - s // 2, 0), int(dim) - s)  # keep the whole patch inside the image
            box.append(slice(start, start + s))
        return tuple(box)

    def __call__(self, img: NdarrayOrTensor, label: NdarrayOrTensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        lab = convert_to_tensor(label, track_meta=False)
        shape = tuple(image.shape[1:])
        if tuple(lab.shape[1:]) != shape:
            raise ValueError(f"image and label spatial shapes differ: {shape} vs {tuple(lab.shape[1:])}.")
        roi = tuple(int(r) for r in ensure_tuple_rep(self.roi_size, len(shape)))
        mode = self.mode
        if mode in ("bilinear", "trilinear"):
            mode = "bilinear" if len(shape) == 2 else "trilinear"
        foreground = torch.nonzero(lab[0].round().long() != self.background)
        n_free = int(round(self.max_background_fraction * self.num_patches))
        patches, classes = [], []
        for i in range(self.num_patches):
            targeted = i >= n_free and len(foreground) > 0
            for _ in range(self.max_attempts if targeted else 1):
                centre = foreground[int(self.R.randint(0, len(foreground)))].tolist() if targeted else None
                box = self._box(shape, centre)
                cls = majority_class(lab[(slice(None), *box)])
                if cls != self.background:
                    break
            patch = image[(slice(None), *box)][None]
            kwargs = {"align_corners": False} if mode in ("bilinear", "trilinear") else {}
            patches.append(F.interpolate(patch, size=roi, mode=mode, **kwargs)[0])
            classes.append(cls)
        return torch.stack(patches), torch.tensor(classes, dtype=torch.long)


class RandMajorityClassPatchesd(Randomizable, MapTransform):
    """
    Dictionary-based wrapper of :py:class:`RandMajorityClassPatches`: returns a list of ``num_patches`` dicts (like
    MONAI's ``RandCropByPosNegLabeld``, so a ``DataLoader`` flattens them into the batch), each holding one resized
    patch of every key in ``keys`` (the same box for all keys) and its majority class under ``class_key`` as a
    ``(1,)`` long tensor; other entries are copied.

    Args:
        keys: images to cut patches from (same spatial shape as the label).
        label_key: the label map whose majority class labels each patch.
        class_key: where the class goes (``"label"`` by default, so the patch dicts feed MONAI's default batch
            preparation); it replaces the label map.
        num_patches, min_size, max_size, roi_size, max_background_fraction, background, max_attempts, mode: see
            :py:class:`RandMajorityClassPatches`.
        allow_missing_keys: don't raise on missing keys.

    Raises:
        ValueError: see :py:class:`RandMajorityClassPatches`; ``label_key`` missing from the data.
    """

    backend = RandMajorityClassPatches.backend

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        class_key: str = "label",
        num_patches: int = 10,
        min_size: int = 64,
        max_size: int = 256,
        roi_size: int | Sequence[int] = 128,
        max_background_fraction: float = 0.1,
        background: int = 0,
        max_attempts: int = 10,
        mode: str = "area",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_key, self.class_key = label_key, class_key
        self.sampler = RandMajorityClassPatches(
            num_patches, min_size, max_size, roi_size, max_background_fraction, background, max_attempts, mode
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        pass

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, torch.Tensor]]:
        d = dict(data)
        if self.label_key not in d:
            raise ValueError(f"`{self.label_key}` is missing: patches are labelled from the label map.")
        keys = list(self.key_iterator(d))
        n = self.sampler.num_patches
        # one draw of boxes for all keys: stack them along channels, split afterwards
        channels = [convert_to_tensor(d[k], track_meta=False, dtype=torch.float32) for k in keys]
        patches, classes = self.sampler(torch.cat(channels, dim=0), d[self.label_key])
        out = []
        for i in range(n):
            item = {k: v for k, v in d.items() if k not in keys and k != self.label_key}
            start = 0
            for k, c in zip(keys, channels, strict=True):
                item[k] = patches[i, start : start + c.shape[0]]
                start += c.shape[0]
            item[self.class_key] = classes[i : i + 1]
            out.append(item)
        return out


RandMajorityClassPatchesD = RandMajorityClassPatchesDict = RandMajorityClassPatchesd
