"""Context restoration, a self-supervised proxy task for single-channel scans: swap random patch pairs, restore."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple_rep

__all__ = [
    "RandContextShuffle",
    "RandContextShuffleD",
    "RandContextShuffleDict",
    "RandContextShuffled",
]


class RandContextShuffle(Randomizable, Transform):
    """
    Corrupt a channel-first image (``C, *spatial``, 2D or 3D) by swapping ``num_swaps`` pairs of random,
    non-overlapping patches of side ``patch_size``; a network trained to restore the original image (L2 loss) learns
    the anatomy's context without labels. Intensities and their histogram are unchanged, so the proxy suits
    single-channel MR / CT, where colourisation (the proxy of Mix-and-Match) has nothing to predict.

        Chen, L., Bentley, P., Mori, K., Misawa, K., Fujiwara, M., Rueckert, D. (2019) Self-supervised learning for
        medical image analysis using image context restoration. Medical Image Analysis 58:101539.

    Args:
        num_swaps: patch pairs swapped per image (the paper repeats the swap ``T`` times; 10 here by default).
        patch_size: side of the swapped patches, one int or one per spatial axis (clipped to the image).
        max_attempts: tries to draw a pair that does not overlap; a pair still overlapping is skipped.

    Raises:
        ValueError: ``num_swaps`` < 0, a ``patch_size`` < 1 or ``max_attempts`` < 1.

    Example::

        >>> t = RandContextShuffle(num_swaps=4, patch_size=8)
        >>> t.set_random_state(0)
        >>> corrupted = t(torch.rand(1, 64, 64, 32))
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, num_swaps: int = 10, patch_size: int | Sequence[int] = 8, max_attempts: int = 20) -> None:
        if num_swaps < 0:
            raise ValueError(f"`num_swaps` must be >= 0, got {num_swaps}.")
        sizes = ensure_tuple_rep(patch_size, 1) if isinstance(patch_size, int) else tuple(patch_size)
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f"`patch_size` must be >= 1, got {patch_size}.")
        if max_attempts < 1:
            raise ValueError(f"`max_attempts` must be >= 1, got {max_attempts}.")
        self.num_swaps, self.patch_size, self.max_attempts = int(num_swaps), patch_size, int(max_attempts)
        self._pairs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self._size: tuple[int, ...] = ()

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        size = ensure_tuple_rep(self.patch_size, len(spatial_shape))
        self._size = tuple(max(1, min(int(s), int(d))) for s, d in zip(size, spatial_shape, strict=True))
        self._pairs = []
        for _ in range(self.num_swaps):
            for _ in range(self.max_attempts):
                a, b = (self._corner(spatial_shape) for _ in (0, 1))
                if any(abs(i - j) >= s for i, j, s in zip(a, b, self._size, strict=True)):  # disjoint along some axis
                    self._pairs.append((a, b))
                    break

    def _corner(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(self.R.randint(0, int(d) - s + 1)) for d, s in zip(spatial_shape, self._size, strict=True))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> torch.Tensor:
        out = convert_to_tensor(img, track_meta=False).clone()
        if randomize:
            self.randomize(out.shape[1:])
        for a, b in self._pairs:
            sa = (slice(None), *[slice(i, i + s) for i, s in zip(a, self._size, strict=True)])
            sb = (slice(None), *[slice(i, i + s) for i, s in zip(b, self._size, strict=True)])
            patch = out[sa].clone()
            out[sa] = out[sb]
            out[sb] = patch
        return out


class RandContextShuffled(Randomizable, MapTransform):
    """
    Dictionary-based wrapper of :py:class:`RandContextShuffle`: the clean image is copied to ``target_key`` (the
    restoration target) before ``keys`` is corrupted; all keys get the same swaps.

    Args:
        keys: images to corrupt.
        target_key: key of the clean copy of the first key (``"label"``, so MONAI's ``SupervisedTrainer`` trains
            ``network(corrupted) -> clean`` with its default batch preparation); ``None``: no copy.
        num_swaps, patch_size, max_attempts: see :py:class:`RandContextShuffle`.
        allow_missing_keys: don't raise on missing keys.

    Raises:
        ValueError: see :py:class:`RandContextShuffle`.
    """

    backend = RandContextShuffle.backend

    def __init__(
        self,
        keys: KeysCollection,
        target_key: str | None = "label",
        num_swaps: int = 10,
        patch_size: int | Sequence[int] = 8,
        max_attempts: int = 20,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.target_key = target_key
        self.shuffler = RandContextShuffle(num_swaps, patch_size, max_attempts)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.shuffler.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        pass

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = True
        for key in self.key_iterator(d):
            if first:
                if self.target_key is not None:
                    d[self.target_key] = convert_to_tensor(d[key], track_meta=False).clone()
                self.shuffler.randomize(d[key].shape[1:])
                first = False
            d[key] = self.shuffler(d[key], randomize=False)
        return d


RandContextShuffleD = RandContextShuffleDict = RandContextShuffled
