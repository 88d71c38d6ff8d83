from __future__ import annotations

import math

import pytest
import torch

from monai_wsss.losses import DualTaskConsistencyLoss

SHAPE = (1, 2, 2, 2)  # 1 channel, 2x2x2


def _reference(seg, sdf, label, label_sdf, n, w, beta=0.3, k=1500.0, smooth=1e-5):
    """DTC objective written out: squared-denominator soft Dice over the labelled batch, per channel then mean."""
    p = torch.sigmoid(seg[:n])
    dims = (0, *range(2, seg.ndim))
    dice = 1 - (2 * (p * label).sum(dims) + smooth) / ((p**2).sum(dims) + (label**2).sum(dims) + smooth)
    mse = ((sdf[:n] - label_sdf) ** 2).mean()
    cons = ((torch.sigmoid(-k * sdf) - torch.sigmoid(seg)) ** 2).mean()
    return dice.mean(), mse, cons, dice.mean() + beta * mse + w * cons


def _random_batch(seed=0, n_l=2, n_u=2, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randn((n_l + n_u, *shape), generator=g) * 2
    sdf = torch.tanh(torch.randn((n_l + n_u, *shape), generator=g)) * 2e-3  # near the level set: informative
    label = (torch.rand((n_l, *shape), generator=g) > 0.5).float()
    label_sdf = torch.rand((n_l, *shape), generator=g) * 2 - 1
    return seg, sdf, label, label_sdf


def test_hand_computed_values():
    seg = torch.zeros(4, *SHAPE)
    seg[2:] = math.log(3.0)  # unlabelled probabilities 0.75
    sdf = torch.zeros(4, *SHAPE)  # smooth Heaviside 0.5 everywhere
    label = torch.ones(2, *SHAPE)
    label_sdf = torch.full((2, *SHAPE), 0.5)
    out = DualTaskConsistencyLoss()((seg, sdf), (label, label_sdf), num_labeled=2, unsup_weight=2.0)
    assert set(out) == {"loss", "loss_dice", "loss_sdf", "loss_consistency"}
    # Dice: p = 0.5 on 16 labelled voxels, y = 1: 1 - (2 * 8 + eps) / (16 * 0.25 + 16 + eps)
    assert out["loss_dice"].item() == pytest.approx(1 - (16 + 1e-5) / (20 + 1e-5), abs=1e-6)
    assert out["loss_dice"].item() == pytest.approx(0.2, abs=1e-6)
    assert out["loss_sdf"].item() == pytest.approx(0.25, abs=1e-7)
    # consistency: labelled 16 voxels (0.5 - 0.5)^2 = 0, unlabelled 16 voxels (0.5 - 0.75)^2, mean over all 32
    assert out["loss_consistency"].item() == pytest.approx(16 * 0.0625 / 32, abs=1e-7)
    assert out["loss"].item() == pytest.approx(0.2 + 0.3 * 0.25 + 2.0 * 0.03125, abs=1e-6)


@pytest.mark.parametrize("w", [0.0, 0.37, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_terms_against_reference(w, seed):
    seg, sdf, label, label_sdf = _random_batch(seed)
    out = DualTaskConsistencyLoss()((seg, sdf), (label, label_sdf), num_labeled=2, unsup_weight=w)
    dice, mse, cons, total = _reference(seg, sdf, label, label_sdf, 2, w)
    assert cons.item() > 1e-3  # the consistency term is not trivially zero here
    torch.testing.assert_close(out["loss_dice"], dice, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["loss_sdf"], mse, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["loss_consistency"], cons, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["loss"], total, atol=1e-6, rtol=1e-5)
    assert out["loss"].item() == pytest.approx(
        out["loss_dice"].item() + 0.3 * out["loss_sdf"].item() + w * out["loss_consistency"].item(), abs=1e-6
    )


def test_options_multichannel_and_2d():
    seg, sdf, label, label_sdf = _random_batch(2, n_l=3, n_u=1, shape=(2, 4, 5))
    loss = DualTaskConsistencyLoss(k=50.0, sdf_weight=1.5, smooth=1.0)
    out = loss((seg, sdf), (label, label_sdf), unsup_weight=0.5)  # num_labeled defaults to len(label)
    dice, mse, cons, total = _reference(seg, sdf, label, label_sdf, 3, 0.5, beta=1.5, k=50.0, smooth=1.0)
    torch.testing.assert_close(out["loss_dice"], dice, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["loss_consistency"], cons, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["loss"], total, atol=1e-6, rtol=1e-5)


def test_all_labelled_batch():
    seg, sdf, label, label_sdf = _random_batch(3, n_l=4, n_u=0)
    out = DualTaskConsistencyLoss()((seg, sdf), (label, label_sdf), num_labeled=4, unsup_weight=1.0)
    torch.testing.assert_close(out["loss"], _reference(seg, sdf, label, label_sdf, 4, 1.0)[3], atol=1e-6, rtol=1e-5)


def test_unlabelled_samples_do_not_touch_supervised_terms():
    seg, sdf, label, label_sdf = _random_batch(4)
    loss = DualTaskConsistencyLoss()
    a = loss((seg, sdf), (label, label_sdf), num_labeled=2, unsup_weight=1.0)
    seg2, sdf2 = seg.clone(), sdf.clone()
    seg2[2:] = torch.randn_like(seg2[2:]) * 5
    sdf2[2:] = -sdf2[2:] + 1e-3
    b = loss((seg2, sdf2), (label, label_sdf), num_labeled=2, unsup_weight=1.0)
    assert a["loss_dice"].item() == b["loss_dice"].item()
    assert a["loss_sdf"].item() == b["loss_sdf"].item()
    assert a["loss_consistency"].item() != pytest.approx(b["loss_consistency"].item(), abs=1e-4)
    # and labelled rows do change the supervised terms
    seg3 = seg.clone()
    seg3[:2] += 1.0
    c = loss((seg3, sdf), (label, label_sdf), num_labeled=2, unsup_weight=1.0)
    assert c["loss_dice"].item() != pytest.approx(a["loss_dice"].item(), abs=1e-4)


def _grads(w, seed=5):
    seg, sdf, label, label_sdf = _random_batch(seed)
    seg.requires_grad_(True)
    sdf.requires_grad_(True)
    DualTaskConsistencyLoss()((seg, sdf), (label, label_sdf), num_labeled=2, unsup_weight=w)["loss"].backward()
    return seg, sdf


def test_unlabelled_gradient_only_from_consistency():
    seg, sdf = _grads(0.0)
    assert (seg.grad[2:] == 0).all() and (sdf.grad[2:] == 0).all()
    assert seg.grad[:2].abs().sum() > 0 and sdf.grad[:2].abs().sum() > 0

    w = 0.7
    seg, sdf = _grads(w)
    assert (seg.grad[2:] != 0).any() and (sdf.grad[2:] != 0).any()
    # on unlabelled rows the gradient is exactly that of w * consistency
    s, d = seg.detach().clone().requires_grad_(True), sdf.detach().clone().requires_grad_(True)
    (w * ((torch.sigmoid(-1500.0 * d) - torch.sigmoid(s)) ** 2).mean()).backward()
    torch.testing.assert_close(seg.grad[2:], s.grad[2:], atol=1e-8, rtol=1e-5)
    torch.testing.assert_close(sdf.grad[2:], d.grad[2:], atol=1e-8, rtol=1e-5)


def test_gradient_reaches_sdf_head_through_task_transform():
    # no labelled sdf error, so the sdf gradient of the labelled rows is the consistency term's only
    seg, sdf, label, _ = _random_batch(6)
    sdf.requires_grad_(True)
    out = DualTaskConsistencyLoss(sdf_weight=0.0)((seg, sdf), (label, sdf.detach()[:2].clone()), unsup_weight=1.0)
    out["loss"].backward()
    h, p = torch.sigmoid(-1500.0 * sdf.detach()), torch.sigmoid(seg)
    expected = 2 * (h - p) * (-1500.0) * h * (1 - h) / seg.numel()
    torch.testing.assert_close(sdf.grad, expected, atol=1e-7, rtol=1e-4)
    assert (sdf.grad != 0).all()


def test_invalid_inputs():
    seg, sdf, label, label_sdf = _random_batch(7)
    loss = DualTaskConsistencyLoss()
    with pytest.raises(ValueError, match="num_labeled"):
        loss((seg, sdf), (label, label_sdf), num_labeled=3)
    with pytest.raises(ValueError, match="num_labeled"):
        loss((seg[:1], sdf[:1]), (label, label_sdf))  # more labels than samples
    with pytest.raises(ValueError, match="do not match"):
        loss((seg, sdf), (label, label_sdf[:, 0]))  # no channel dim: must not broadcast
    with pytest.raises(ValueError, match="do not match"):
        loss((seg, sdf), (label[..., :1], label_sdf))
    with pytest.raises(ValueError, match="shapes differ"):
        loss((seg, sdf[..., :1]), (label, label_sdf[..., :1]))
    with pytest.raises(ValueError, match="sdf_weight"):
        DualTaskConsistencyLoss(sdf_weight=-0.1)
    with pytest.raises(ValueError, match="`k`"):
        DualTaskConsistencyLoss(k=0.0)
