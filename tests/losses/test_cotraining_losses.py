"""Tests of the co-training agreement (generalised JSD) and diversity (KL) losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_wsss.losses.cotraining import (
    AdversarialDiversityLoss,
    JensenShannonDivergenceLoss,
    generalized_jsd,
    kl_divergence,
)


def _dist(*p: float) -> torch.Tensor:
    """One voxel, one sample: a (1, C, 1, 1) probability map."""
    return torch.tensor(p, dtype=torch.float64).view(1, -1, 1, 1)


def _np_jsd(probs: np.ndarray) -> np.ndarray:
    """Independent numpy JSD: probs (S, B, C, ...) -> (B, ...), with 0 log 0 = 0."""

    def h(p, axis):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -t.sum(axis)

    return h(probs.mean(0), 1) - h(probs, 2).mean(0)


def _np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# --- generalized_jsd ---------------------------------------------------------------------------------------------


def test_jsd_zero_for_identical_distributions():
    """Identical members: JSD is 0 everywhere."""
    p = torch.softmax(torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    out = generalized_jsd([p, p.clone(), p.clone()])
    assert out.shape == (2, 4, 5)
    torch.testing.assert_close(out, torch.zeros(2, 4, 5), atol=1e-6, rtol=0)


def test_jsd_disjoint_one_hot_is_log2():
    """p = [1, 0], q = [0, 1]: H(m) = log 2, H(p) = H(q) = 0."""
    out = generalized_jsd([_dist(1.0, 0.0), _dist(0.0, 1.0)])
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(math.log(2), abs=1e-7)


def test_jsd_hand_computed_two_class():
    """p = [0.5, 0.5], q = [0.9, 0.1]: m = [0.7, 0.3]."""
    h_m = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    h_p = math.log(2)
    h_q = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    expected = h_m - 0.5 * (h_p + h_q)
    assert expected == pytest.approx(0.1017, abs=1e-3)  # sanity: about 0.10 nats
    out_seq = generalized_jsd([_dist(0.5, 0.5), _dist(0.9, 0.1)])
    out_stacked = generalized_jsd(torch.stack([_dist(0.5, 0.5), _dist(0.9, 0.1)]))
    assert out_seq.item() == pytest.approx(expected, abs=1e-9)
    assert out_stacked.item() == pytest.approx(expected, abs=1e-9)


def test_jsd_max_is_log_s_for_three_disjoint_one_hot():
    """S = 3 one-hot members on 3 different classes: JSD = log 3, the maximum."""
    members = [_dist(1, 0, 0), _dist(0, 1, 0), _dist(0, 0, 1)]
    assert generalized_jsd(members).item() == pytest.approx(math.log(3), abs=1e-7)
    # any other (non-disjoint) triple stays below log 3
    other = [_dist(0.8, 0.1, 0.1), _dist(0.1, 0.8, 0.1), _dist(0.1, 0.1, 0.8)]
    assert 0 < generalized_jsd(other).item() < math.log(3) - 0.1


def test_jsd_against_numpy_per_voxel():
    """Random maps: each voxel matches the numpy formula (the map is not averaged)."""
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(3, 2, 4, 3, 5, generator=g, dtype=torch.float64), dim=2)
    torch.testing.assert_close(generalized_jsd(p), torch.from_numpy(_np_jsd(p.numpy())))


def test_jsd_rejects_too_few_dims():
    with pytest.raises(ValueError, match="shape"):
        generalized_jsd(torch.rand(2, 3))


# --- JensenShannonDivergenceLoss ---------------------------------------------------------------------------------


def test_jsd_loss_logits_list_and_stacked():
    """Logits in: mean over batch and voxels of the numpy JSD of the softmax maps."""
    g = torch.Generator().manual_seed(2)
    logits = [torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 for _ in range(3)]
    expected = _np_jsd(_np_softmax(np.stack([t.numpy() for t in logits]), axis=2)).mean()
    loss = JensenShannonDivergenceLoss()
    assert loss(logits).item() == pytest.approx(expected, rel=1e-9)
    assert loss(torch.stack(logits)).item() == pytest.approx(expected, rel=1e-9)


def test_jsd_loss_probabilities_and_reductions():
    """softmax=False takes probabilities; 'none' gives the (B, H, W) map and 'sum' its sum."""
    p = torch.zeros(2, 2, 2, 1, 2, dtype=torch.float64)  # S=2, B=2, C=2, H=1, W=2
    p[0, :, 0] = 1.0  # member 0: class 0 everywhere
    p[1, 0, 0] = 1.0  # member 1, sample 0: agrees
    p[1, 1, 1] = 1.0  # member 1, sample 1: disagrees
    expected_map = torch.tensor([[[0.0, 0.0]], [[math.log(2), math.log(2)]]], dtype=torch.float64)
    out_map = JensenShannonDivergenceLoss(softmax=False, reduction="none")(p)
    assert out_map.shape == (2, 1, 2)
    torch.testing.assert_close(out_map, expected_map)
    assert JensenShannonDivergenceLoss(softmax=False)(p).item() == pytest.approx(math.log(2) / 2)
    assert JensenShannonDivergenceLoss(softmax=False, reduction="sum")(p).item() == pytest.approx(2 * math.log(2))
    # the same probabilities read as logits are softened by the softmax: a smaller value
    assert JensenShannonDivergenceLoss(softmax=True)(p).item() < math.log(2) / 2 - 0.1


def test_jsd_loss_needs_two_members_and_valid_reduction():
    with pytest.raises(ValueError, match="at least 2"):
        JensenShannonDivergenceLoss()([torch.randn(1, 2, 3, 3)])
    with pytest.raises(ValueError, match="at least 2"):
        JensenShannonDivergenceLoss()(torch.randn(1, 1, 2, 3, 3))
    with pytest.raises(ValueError):
        JensenShannonDivergenceLoss(reduction="max")


def test_jsd_loss_gradient_pulls_members_together():
    """A gradient step on the agreement loss reduces it (gradients reach every member)."""
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(1, 3, 2, 2, generator=g, requires_grad=True) for _ in range(2)]
    loss = JensenShannonDivergenceLoss()(logits)
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in logits)
    with torch.no_grad():
        after = JensenShannonDivergenceLoss()([t - 1.0 * t.grad for t in logits])
    assert after.item() < loss.item()


# --- kl_divergence and AdversarialDiversityLoss ------------------------------------------------------------------

P, Q = (0.9, 0.1), (0.5, 0.5)
KL_PQ = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # ~0.368
KL_QP = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # ~0.511


def _logits(p) -> torch.Tensor:
    return torch.log(_dist(*p))


def test_kl_divergence_hand_computed_and_shape():
    """KL(P || Q) per voxel with P, Q the softmax of the logits; logits shifted by a constant give the same."""
    assert abs(KL_PQ - KL_QP) > 0.1  # the two directions really differ
    out = kl_divergence(_logits(P) + 3.0, _logits(Q) - 1.0)
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(KL_PQ, abs=1e-9)
    assert kl_divergence(_logits(Q), _logits(P)).item() == pytest.approx(KL_QP, abs=1e-9)
    assert kl_divergence(_logits(P), _logits(P)).item() == pytest.approx(0.0, abs=1e-12)


def test_adversarial_diversity_direction_is_kl_adv_clean():
    """loss(adv, clean) = KL(softmax(adv) || softmax(clean)), not the reverse."""
    loss = AdversarialDiversityLoss()(_logits(P), _logits(Q)).item()
    assert loss == pytest.approx(KL_PQ, abs=1e-9)
    assert loss != pytest.approx(KL_QP, abs=1e-3)


def test_adversarial_diversity_mean_over_voxels():
    """Two voxels, one at KL(P||Q) and one at 0: the mean is KL(P||Q) / 2; 'none' keeps the map."""
    adv = torch.cat([_logits(P), _logits(Q)], dim=3)
    clean = torch.cat([_logits(Q), _logits(Q)], dim=3)
    assert AdversarialDiversityLoss()(adv, clean).item() == pytest.approx(KL_PQ / 2, abs=1e-9)
    torch.testing.assert_close(
        AdversarialDiversityLoss(reduction="none")(adv, clean), torch.tensor([[[KL_PQ, 0.0]]], dtype=torch.float64)
    )


def test_adversarial_diversity_gradients_reach_both_inputs():
    adv = _logits(P).clone().requires_grad_(True)
    clean = _logits(Q).clone().requires_grad_(True)
    AdversarialDiversityLoss()(adv, clean).backward()
    assert adv.grad is not None and adv.grad.abs().sum() > 1e-3
    assert clean.grad is not None and clean.grad.abs().sum() > 1e-3
    # d KL / d clean_logits = Q - P (softmax gradient): [0.5 - 0.9, 0.5 - 0.1]
    torch.testing.assert_close(clean.grad.flatten(), torch.tensor([-0.4, 0.4], dtype=torch.float64))


def test_adversarial_diversity_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        AdversarialDiversityLoss()(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))
