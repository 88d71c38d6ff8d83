from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_wsss.losses import PartialLabelLoss


def _case(seed=0, spatial=(5, 4, 3)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, *spatial, generator=g)
    target = torch.randint(0, 3, (2, 1, *spatial), generator=g)
    annotated = torch.rand(2, 1, *spatial, generator=g) < 0.3
    return logits, torch.where(annotated, target, torch.full_like(target, -1)), annotated


def test_hand_value():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # B=1, N=2, H=1, W=2
    target = torch.tensor([[[[0, -1]]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(PartialLabelLoss()(logits, target)) == pytest.approx(expected)


@pytest.mark.parametrize("dice_weight", [0.0, 1.0])
def test_unannotated_voxels_change_neither_loss_nor_gradients(dice_weight):
    logits, target, annotated = _case()
    loss_fn = PartialLabelLoss(dice_weight=dice_weight)
    a = logits.clone().requires_grad_(True)
    la = loss_fn(a, target)
    la.backward()
    # change logits AND the (ignored) targets of unannotated voxels
    b_data = torch.where(annotated, logits, 100 * torch.randn_like(logits))
    b = b_data.clone().requires_grad_(True)
    target_b = torch.where(annotated, target, torch.full_like(target, -1))
    lb = loss_fn(b, target_b)
    lb.backward()
    assert float(la.detach()) == pytest.approx(float(lb.detach()), rel=1e-6)
    torch.testing.assert_close(a.grad, b.grad)
    assert float(a.grad[~annotated.expand_as(a)].abs().max()) == 0.0
    assert float(a.grad.abs().sum()) > 0


def test_mean_is_over_annotated_voxels_only():
    logits, target, annotated = _case(1)
    valid = target[:, 0] >= 0
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0].clamp_min(0), reduction="none")[valid].mean()
    assert float(PartialLabelLoss()(logits, target)) == pytest.approx(float(ce), rel=1e-6)
    none = PartialLabelLoss(reduction="none")(logits, target)
    assert none.shape == target.shape and float(none[~annotated].abs().max()) == 0.0
    # explicit mask intersects with the ignore value
    mask = torch.zeros_like(annotated)
    assert float(PartialLabelLoss()(logits, target, mask=mask)) == 0.0


def test_no_annotation_is_zero_and_differentiable():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = PartialLabelLoss(dice_weight=0.5)(logits, torch.full((1, 1, 3, 3), -1))
    loss.backward()
    assert float(loss.detach()) == 0.0 and np.all(logits.grad.numpy() == 0)


def test_rejects_conflicting_options():
    with pytest.raises(ValueError, match="Incompatible"):
        PartialLabelLoss(dice_weight=1.0, reduction="none")
    with pytest.raises(ValueError, match="B1H"):
        PartialLabelLoss()(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
