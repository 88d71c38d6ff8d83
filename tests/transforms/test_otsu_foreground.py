from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_wsss.transforms import OtsuForeground

TEST_NDARRAYS = (np.asarray, torch.as_tensor, lambda x: MetaTensor(torch.as_tensor(x)))


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _bimodal(shape, seed=0):
    """Background levels {0, 1, 2}, foreground {6, 7, 8}: integers fall on skimage's histogram bin edges (range 8,
    256 bins), so the Otsu split (the bin of the brightest background voxel) separates the two modes exactly."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s // 4, 3 * s // 4) for s in shape)] = True
    img = np.where(mask, rng.integers(6, 9, shape), rng.integers(0, 3, shape))
    img.flat[0], img.flat[-1] = 0, 2  # both extremes of the background present (corners are background)
    img[tuple(s // 2 for s in shape)] = 8
    return img.astype(np.float32), mask


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
@pytest.mark.parametrize("shape", [(16, 12), (10, 12, 8)])
def test_bimodal_image(in_type, shape):
    img, mask = _bimodal(shape)
    x = in_type(img[None])
    out = OtsuForeground()(x)
    assert type(out) is type(x)
    assert tuple(out.shape) == (1, *shape)
    assert out.dtype in (np.float32, torch.float32)
    np.testing.assert_array_equal(_np(out)[0], mask.astype(np.float32))


def test_channels_thresholded_separately():
    a, mask_a = _bimodal((12, 12), seed=1)
    b, mask_b = _bimodal((12, 12), seed=2)
    b = 100.0 + 4.0 * (8.0 - b)  # another range, inverted: bright outside the square
    out = OtsuForeground()(np.stack([a, b]))
    np.testing.assert_array_equal(out[0], mask_a)
    np.testing.assert_array_equal(out[1], ~mask_b)  # one global threshold would put all of channel 0 below it


def test_threshold_matches_skimage():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(5)
    img = rng.gamma(2.0, 1.0, (1, 20, 20)).astype(np.float32)
    out = OtsuForeground()(img)
    np.testing.assert_array_equal(out[0], img[0] > threshold_otsu(img[0]))
    assert 0 < out.sum() < out.size


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
def test_constant_image_gives_zeros(in_type):
    x = in_type(np.full((2, 6, 5), 3.5, np.float32))
    out = OtsuForeground()(x)
    assert type(out) is type(x)
    np.testing.assert_array_equal(_np(out), np.zeros((2, 6, 5)))


def test_constant_channel_next_to_bimodal_channel():
    img, mask = _bimodal((8, 8))
    out = OtsuForeground()(np.stack([np.zeros((8, 8), np.float32), img]))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[1], mask)
