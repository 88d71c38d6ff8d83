"""Supervoxels (2D superpixels / 3D supervoxels) by SLIC, as MONAI array and dictionary transforms."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_numpy, convert_to_tensor, optional_import

from ..utils import atomic_path

slic, _has_slic = optional_import("skimage.segmentation", name="slic")

__all__ = ["Supervoxels", "Supervoxelsd", "SupervoxelsD", "SupervoxelsDict", "relabel_consecutive"]


def relabel_consecutive(regions: np.ndarray) -> np.ndarray:
    """Map the distinct values of an integer region map to ``0..R-1`` (in increasing order of the old ids)."""
    _, inverse = np.unique(regions, return_inverse=True)
    return inverse.reshape(regions.shape).astype(np.int64)


class Supervoxels(Transform):
    """
    Over-segment a channel-first image (``C, H, W[, D]``) into superpixels (2D) or supervoxels (3D) with
    scikit-image's SLIC (k-means in the joint intensity + position space, Achanta et al., TPAMI 2012), the first step
    of geometric active learning: queries, uncertainties and the adjacency graph are defined on these regions.

        Konyushkova, K., Sznitman, R., Fua, P. (2015) Introducing Geometry in Active Learning for Image
        Segmentation. ICCV 2015; and (2019) Geometry in Active Learning for Binary and Multi-class Image
        Segmentation. CVIU 2019 (supervoxel over-segmentation, Sec. 3).

    The output is a ``(1, H, W[, D])`` int64 region map whose values are ``0..R-1``: every pixel belongs to exactly
    one region and the ids are consecutive (SLIC's connectivity enforcement can leave gaps; they are relabelled).

    Args:
        n_segments: approximate number of regions.
        compactness: SLIC's trade-off between intensity and spatial proximity (higher: more regular regions). For
            images scaled to [0, 1] values around 0.05-0.5 are typical; scikit-image's default is 10 for Lab colour.
        spacing: voxel spacing per spatial axis (anisotropic MR / EM volumes); ``None`` means isotropic.
        sigma: Gaussian smoothing applied by SLIC before clustering.
        max_num_iter: k-means iterations.
        enforce_connectivity: make every region spatially connected (SLIC's post-processing).
        cache_dir: when given, the region map is cached in this folder as ``<sha256>.npy`` keyed by a hash of the
            image (bytes, dtype, shape) and every parameter above; a cached map is read instead of recomputed.
            Files are written to a temporary name and renamed (atomic), so a killed run leaves no partial file.

    Example::

        >>> img = np.random.rand(1, 32, 32).astype(np.float32)
        >>> regions = Supervoxels(n_segments=16, compactness=0.1)(img)
        >>> regions.shape, int(regions.min())
        ((1, 32, 32), 0)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        n_segments: int = 100,
        compactness: float = 0.1,
        spacing: Sequence[float] | None = None,
        sigma: float = 0.0,
        max_num_iter: int = 10,
        enforce_connectivity: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        if n_segments < 1:
            raise ValueError(f"`n_segments` must be >= 1, got {n_segments}.")
        if compactness <= 0:
            raise ValueError(f"`compactness` must be positive, got {compactness}.")
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.sigma = float(sigma)
        self.max_num_iter = int(max_num_iter)
        self.enforce_connectivity = bool(enforce_connectivity)
        self.cache_dir = cache_dir

    def _params(self) -> dict:
        return {
            "n_segments": self.n_segments,
            "compactness": self.compactness,
            "spacing": self.spacing,
            "sigma": self.sigma,
            "max_num_iter": self.max_num_iter,
            "enforce_connectivity": self.enforce_connectivity,
        }

    def cache_key(self, img: np.ndarray) -> str:
        """sha256 of the image bytes, dtype, shape and the SLIC parameters."""
        h = hashlib.sha256()
        arr = np.ascontiguousarray(img)
        h.update(json.dumps({"shape": arr.shape, "dtype": str(arr.dtype), **self._params()}, sort_keys=True).encode())
        h.update(arr.tobytes())
        return h.hexdigest()

    def _compute(self, img: np.ndarray) -> np.ndarray:
        if not _has_slic:
            raise RuntimeError("`Supervoxels` needs scikit-image (skimage.segmentation.slic).")
        spatial = img.shape[1:]
        if self.spacing is not None and len(self.spacing) != len(spatial):
            raise ValueError(f"`spacing` has {len(self.spacing)} values for {len(spatial)} spatial dims.")
        regions = slic(
            np.moveaxis(img.astype(np.float64), 0, -1),
            n_segments=self.n_segments,
            compactness=self.compactness,
            spacing=None if self.spacing is None else np.asarray(self.spacing),
            sigma=self.sigma,
            max_num_iter=self.max_num_iter,
            convert2lab=False,
            enforce_connectivity=self.enforce_connectivity,
            start_label=0,
            channel_axis=-1,
        )
        return relabel_consecutive(np.asarray(regions))[None]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        arr = convert_to_numpy(img)
        if arr.ndim not in (3, 4):
            raise ValueError(f"`img` must be channel-first 2D or 3D (C, H, W[, D]), got shape {tuple(arr.shape)}.")
        path = None
        if self.cache_dir is not None:
            path = os.path.join(self.cache_dir, f"{self.cache_key(arr)}.npy")
            if os.path.isfile(path):
                regions = np.load(path)
                return convert_to_tensor(regions, track_meta=False) if isinstance(img, torch.Tensor) else regions
        regions = self._compute(arr)
        if path is not None:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, regions)
        return convert_to_tensor(regions, track_meta=False) if isinstance(img, torch.Tensor) else regions


class Supervoxelsd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.Supervoxels`: writes the region map of ``key`` to
    ``f"{key}_{postfix}"`` and keeps the image.

    Args:
        keys: keys of the channel-first images.
        n_segments, compactness, spacing, sigma, max_num_iter, enforce_connectivity, cache_dir: as
            :py:class:`Supervoxels`.
        postfix: suffix of the output key (``image`` -> ``image_supervoxels``).
        allow_missing_keys: skip missing keys.
    """

    backend = Supervoxels.backend

    def __init__(
        self,
        keys: KeysCollection,
        n_segments: int = 100,
        compactness: float = 0.1,
        spacing: Sequence[float] | None = None,
        sigma: float = 0.0,
        max_num_iter: int = 10,
        enforce_connectivity: bool = True,
        cache_dir: str | None = None,
        postfix: str = "supervoxels",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = Supervoxels(
            n_segments, compactness, spacing, sigma, max_num_iter, enforce_connectivity, cache_dir
        )
        self.postfix = postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.postfix}"] = self.converter(d[key])
        return d


SupervoxelsD = SupervoxelsDict = Supervoxelsd
