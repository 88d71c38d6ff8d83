from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_wsss.transforms import SeedsToPseudoLabel, seeds_to_pseudo_label


def test_threshold_argmax_and_negatives():
    maps = torch.zeros(3, 2, 4, 4)
    maps[0, 0, 0, :] = torch.tensor([4.0, 2.0, 0.8, 0.0])  # normalised: 1, 0.5, 0.2, 0
    maps[0, 1, 1, :] = 10.0
    maps[1, 1] = torch.rand(4, 4)
    maps[2] = torch.rand(2, 4, 4) + 1  # strong maps, but the image has no positive class
    labels = torch.tensor([[1, 0], [0, 1], [0, 0]])
    out = seeds_to_pseudo_label(maps, labels, bg_threshold=0.25)
    assert out.shape == (3, 1, 4, 4) and out.dtype == torch.long
    assert out[0, 0, 0].tolist() == [1, 1, 0, 0]
    assert torch.all(out[0, 0, 1] == 0)  # class 1 is absent in image 0: its map is ignored
    assert set(out[1].unique().tolist()) <= {0, 2}
    assert torch.all(out[2] == 0)  # a valid negative: all background


def test_power_background_and_3d():
    maps = torch.zeros(1, 2, 3, 3, 3)
    maps[0, 0, 0, 0, 0] = 1.0
    maps[0, 0, 0, 0, 1] = 0.3
    maps[0, 1, 2, 2, 2] = 1.0
    maps[0, 1, 2, 2, 1] = 0.2
    out = seeds_to_pseudo_label(maps, torch.tensor([[1, 1]]), bg_power=1.0)
    # background (1 - 0.3) = 0.7 > 0.3 and (1 - 0.2) = 0.8 > 0.2: only the maxima are foreground
    assert out[0, 0, 0, 0, 0] == 1 and out[0, 0, 2, 2, 2] == 2
    assert out.sum() == 3
    soft = seeds_to_pseudo_label(maps, torch.tensor([[1, 1]]), bg_power=8.0)  # (0.7)^8 ~ 0.06 < 0.3
    assert soft[0, 0, 0, 0, 1] == 1 and soft[0, 0, 2, 2, 1] == 2


def test_transform_numpy_and_errors():
    maps = np.zeros((2, 5, 5), dtype=np.float32)
    maps[1, 2, 2] = 3.0
    out = SeedsToPseudoLabel(bg_threshold=0.5)(maps, np.array([0, 1]))
    assert isinstance(out, np.ndarray) and out.shape == (1, 5, 5) and out[0, 2, 2] == 2 and out.sum() == 2
    with pytest.raises(ValueError, match="multi-hot"):
        seeds_to_pseudo_label(torch.rand(1, 2, 4, 4), torch.tensor([[2, 0]]))
    with pytest.raises(ValueError, match="matching"):
        seeds_to_pseudo_label(torch.rand(1, 2, 4, 4), torch.tensor([[1, 0, 1]]))
    with pytest.raises(ValueError, match="bg_threshold"):
        seeds_to_pseudo_label(torch.rand(1, 2, 4, 4), torch.tensor([[1, 0]]), bg_threshold=1.5)
