from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_wsss.active import region_mean
from monai_wsss.transforms import PixelUncertainty, PixelUncertaintyd, entropy, margin, pairwise_entropy


def test_entropy_hand_values():
    p = torch.tensor([[1.0, 0.5, 0.25], [0.0, 0.5, 0.25], [0.0, 0.0, 0.5]])  # columns are pixels (K=3 on dim 0)
    expected = [0.0, math.log(2), -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))]
    np.testing.assert_allclose(entropy(p, dim=0).numpy(), expected, atol=1e-6)


def test_margin_hand_values():
    p = torch.tensor([[0.7, 0.5, 0.2], [0.2, 0.5, 0.3], [0.1, 0.0, 0.5]])
    np.testing.assert_allclose(margin(p, dim=0).numpy(), [1 - 0.5, 1.0, 1 - 0.2], atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        margin(torch.ones(1, 3))


def test_pairwise_entropy_hand_values():
    p = torch.tensor([[0.6], [0.2], [0.2]])  # top two 0.6, 0.2 -> q = 0.75
    np.testing.assert_allclose(pairwise_entropy(p).numpy(), [-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))])
    two = torch.tensor([[0.3, 0.9], [0.7, 0.1]])
    np.testing.assert_allclose(pairwise_entropy(two).numpy(), entropy(two).numpy(), atol=1e-6)


def test_pixel_uncertainty_transform_and_twin():
    probs = np.stack([np.full((2, 3), 0.5), np.full((2, 3), 0.5)]).astype(np.float32)
    out = PixelUncertainty("entropy")(probs)
    assert isinstance(out, np.ndarray) and out.shape == (1, 2, 3)
    np.testing.assert_allclose(out, math.log(2), atol=1e-6)
    d = PixelUncertaintyd("pred", mode="margin")({"pred": torch.as_tensor(probs)})
    assert isinstance(d["pred_uncertainty"], torch.Tensor)
    np.testing.assert_allclose(d["pred_uncertainty"].numpy(), 1.0)
    with pytest.raises(ValueError):
        PixelUncertainty("variance")


def test_region_mean_by_hand():
    values = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    regions = np.array([[0, 0, 2], [1, 1, 2]])
    np.testing.assert_allclose(region_mean(values, regions), [1.5, 4.5, 4.5])
    # channel-first values (C, H, W) -> (R, C); empty region 3 -> 0
    both = np.stack([values, 10 * values])
    np.testing.assert_allclose(
        region_mean(both, regions[None], num_regions=4), [[1.5, 15], [4.5, 45], [4.5, 45], [0, 0]]
    )
    t = region_mean(torch.as_tensor(values[None]), torch.as_tensor(regions[None]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [1.5, 4.5, 4.5])


def test_entropy_probability_floor_is_an_argument():
    p = torch.tensor([1e-10, 1.0 - 1e-10], dtype=torch.float64)
    tail = -(1.0 - 1e-10) * math.log(1.0 - 1e-10)
    assert float(entropy(p, eps=1e-8)) == pytest.approx(-1e-10 * math.log(1e-8) + tail, rel=1e-12)
    assert float(entropy(p)) == pytest.approx(-1e-10 * math.log(1e-10) + tail, rel=1e-12)  # default floor 1e-12
