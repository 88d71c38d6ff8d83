from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from monai_wsss.transforms import Supervoxels, relabel_consecutive


def _blobs(shape):
    """Two-phase image (a bright box in a dark background) plus mild noise."""
    rng = np.random.default_rng(0)
    img = np.zeros((1, *shape), np.float32)
    img[(0, *[slice(s // 4, 3 * s // 4) for s in shape])] = 1.0
    return img + 0.05 * rng.standard_normal(img.shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(32, 28), (16, 14, 12)])
def test_regions_cover_image_once_and_are_consecutive(shape):
    img = _blobs(shape)
    regions = Supervoxels(n_segments=12, compactness=0.1)(img)
    assert regions.shape == (1, *shape) and regions.dtype == np.int64
    ids, counts = np.unique(regions, return_counts=True)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 0..R-1, no gap
    assert counts.sum() == np.prod(shape) and (counts > 0).all()  # every pixel in exactly one region
    assert len(ids) > 1
    # regions follow the box boundary: no region mixes inside and outside much
    inside = img[0] > 0.5
    purity = [max(inside[regions[0] == r].mean(), 1 - inside[regions[0] == r].mean()) for r in ids]
    assert np.mean(purity) > 0.9


def test_torch_in_torch_out_and_spacing():
    img = torch.as_tensor(_blobs((12, 12, 8)))
    regions = Supervoxels(n_segments=8, compactness=0.1, spacing=(1.0, 1.0, 2.0))(img)
    assert isinstance(regions, torch.Tensor) and regions.shape == (1, 12, 12, 8)
    with pytest.raises(ValueError, match="spacing"):
        Supervoxels(spacing=(1.0, 1.0))(img)
    with pytest.raises(ValueError, match="channel-first"):
        Supervoxels()(np.zeros((4, 4)))


def test_cache_round_trip(tmp_path):
    img = _blobs((20, 20))
    sv = Supervoxels(n_segments=9, compactness=0.1, cache_dir=str(tmp_path))
    first = sv(img)
    files = os.listdir(tmp_path)
    assert files == [f"{sv.cache_key(img)}.npy"]  # no leftover temporary file
    np.save(tmp_path / files[0], np.zeros_like(first))  # a cached map is read, not recomputed
    np.testing.assert_array_equal(sv(img), 0)
    other = Supervoxels(n_segments=10, compactness=0.1, cache_dir=str(tmp_path))
    assert other.cache_key(img) != sv.cache_key(img)  # parameters are part of the key
    assert sv.cache_key(img + 1) != sv.cache_key(img)


def test_relabel_consecutive():
    np.testing.assert_array_equal(relabel_consecutive(np.array([[7, 3], [3, 10]])), [[1, 0], [0, 2]])
