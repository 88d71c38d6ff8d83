from __future__ import annotations

import math

import pytest
import torch

from monai_wsss.losses import LevelSetConsistencyLoss, smooth_heaviside


def test_smooth_heaviside_values():
    sdf = torch.tensor([0.0, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0])
    out = smooth_heaviside(sdf)  # k = 1500
    expected = [0.5, 1 / (1 + math.exp(1.5)), 1 / (1 + math.exp(-1.5)), 0.0, 1.0, 0.0, 1.0]
    for o, e in zip(out.tolist(), expected, strict=True):
        assert o == pytest.approx(e, abs=1e-6)
    assert smooth_heaviside(torch.tensor([0.25]), k=4.0).item() == pytest.approx(1 / (1 + math.e))
    # negative inside -> 1 (foreground), positive outside -> 0: monotone decreasing
    s = torch.linspace(-2e-3, 2e-3, 41)
    assert (smooth_heaviside(s).diff() < 0).all()


def _inputs():
    seg = torch.tensor([[[[0.0, 2.0], [-1.0, 0.5]]], [[[3.0, -2.0], [0.0, 1.0]]]])  # 2 x 1 x 2 x 2 logits
    sdf = torch.tensor([[[[0.0, -1e-3], [1e-3, -0.2]]], [[[0.3, 5e-4], [-2e-4, 0.0]]]])
    return seg, sdf


def _hand_map(seg, sdf, k=1500.0):
    p = [1 / (1 + math.exp(-v)) for v in seg.flatten().tolist()]
    h = [1 / (1 + math.exp(k * v)) for v in sdf.flatten().tolist()]
    return torch.tensor([(a - b) ** 2 for a, b in zip(h, p, strict=True)]).reshape(seg.shape)


def test_reductions_against_hand_computation():
    seg, sdf = _inputs()
    f = _hand_map(seg, sdf)
    out_none = LevelSetConsistencyLoss(reduction="none")(seg, sdf)
    assert out_none.shape == seg.shape
    torch.testing.assert_close(out_none, f, atol=1e-6, rtol=1e-5)
    # first voxel: sigmoid(0) = 0.5 = smooth_heaviside(0)
    assert out_none[0, 0, 0, 0].item() == 0.0
    # third voxel of sample 1: seg = 3 vs sdf = 0.3 (outside): (0 - sigmoid(3))^2
    assert out_none[1, 0, 0, 0].item() == pytest.approx((1 / (1 + math.exp(-3))) ** 2, rel=1e-5)
    assert LevelSetConsistencyLoss(reduction="sum")(seg, sdf).item() == pytest.approx(f.sum().item(), rel=1e-5)
    assert LevelSetConsistencyLoss()(seg, sdf).item() == pytest.approx(f.sum().item() / 8, rel=1e-5)


def test_sigmoid_false_takes_probabilities():
    seg, sdf = _inputs()
    prob = torch.sigmoid(seg)
    torch.testing.assert_close(
        LevelSetConsistencyLoss(sigmoid=False, reduction="none")(prob, sdf), _hand_map(seg, sdf), atol=1e-6, rtol=1e-5
    )


def test_k_changes_the_transform():
    seg, sdf = _inputs()
    torch.testing.assert_close(
        LevelSetConsistencyLoss(k=10.0, reduction="none")(seg, sdf), _hand_map(seg, sdf, k=10.0), atol=1e-6, rtol=1e-5
    )


def test_zero_when_consistent():
    sdf = torch.tensor([[[-0.2, -0.01, 0.01, 0.3]]])
    seg = torch.tensor([[[30.0, 30.0, -30.0, -30.0]]])  # saturated, agreeing with the sign of the level set
    assert LevelSetConsistencyLoss()(seg, sdf).item() == pytest.approx(0.0, abs=1e-10)
    assert LevelSetConsistencyLoss()(-seg, sdf).item() == pytest.approx(1.0, abs=1e-6)


def test_gradient_through_task_transform():
    seg, sdf = _inputs()
    seg.requires_grad_(True)
    sdf = sdf.clone().requires_grad_(True)
    LevelSetConsistencyLoss()(seg, sdf).backward()
    k, n = 1500.0, seg.numel()
    h, p = torch.sigmoid(-k * sdf.detach()), torch.sigmoid(seg.detach())
    # d/d sdf mean((h - p)^2) = 2 (h - p) * (-k) h (1 - h) / n ; d/d seg = -2 (h - p) p (1 - p) / n
    torch.testing.assert_close(sdf.grad, 2 * (h - p) * (-k) * h * (1 - h) / n, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(seg.grad, -2 * (h - p) * p * (1 - p) / n, atol=1e-7, rtol=1e-4)
    small = sdf.detach().abs() < 2e-3
    assert (sdf.grad[small & ((h - p).abs() > 1e-3)] != 0).all()
    # saturated task transform (|sdf| >= 0.2) passes no gradient in float32
    assert sdf.grad[sdf.detach().abs() >= 0.2].abs().max().item() < 1e-12


def test_invalid_args():
    with pytest.raises(ValueError, match="`k`"):
        LevelSetConsistencyLoss(k=0)
    with pytest.raises(ValueError, match="`k`"):
        LevelSetConsistencyLoss(k=-3.0)
    with pytest.raises(ValueError):
        LevelSetConsistencyLoss(reduction="average")
    with pytest.raises(ValueError, match="shapes differ"):
        LevelSetConsistencyLoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="shapes differ"):
        LevelSetConsistencyLoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))
