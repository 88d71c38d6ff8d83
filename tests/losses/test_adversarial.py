"""Tests of the FGSM and VAT adversarial perturbations of segmentation inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_wsss.losses.adversarial import FGSM, VAT, segmentation_cross_entropy
from monai_wsss.losses.cotraining import kl_divergence

EPS = 0.05


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _unit(t: torch.Tensor) -> torch.Tensor:
    return t / _per_sample_norm(t).view(-1, *([1] * (t.ndim - 1)))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine of two (B, ...) tensors."""
    return (a * b).flatten(1).sum(1) / (_per_sample_norm(a) * _per_sample_norm(b))


def _conv_model(seed: int = 0, out_channels: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(1, out_channels, 3, padding=1)


def _smooth_model(seed: int = 0) -> nn.Module:
    """Small nonlinear segmenter, float64 (see the VAT tests)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 1)).double()


def _interior_batch(seed: int = 0, b: int = 2, size: int = 8, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (0.2 + 0.6 * torch.rand(b, 1, size, size, generator=g)).to(dtype)
    label = torch.randint(0, 3, (b, 1, size, size), generator=g)
    return x, label


# --- segmentation_cross_entropy ------------------------------------------------------------------------------------


def test_segmentation_cross_entropy_hand_computed():
    """Uniform 2-class logits give log 2; C = 1 uses the sigmoid cross-entropy; (B, H, W) labels work too."""
    logits = torch.zeros(1, 2, 2, 2)
    label = torch.tensor([[[[0, 1], [1, 1]]]])
    assert segmentation_cross_entropy(logits, label).item() == pytest.approx(0.6931472, abs=1e-6)
    assert segmentation_cross_entropy(logits, label[:, 0]).item() == pytest.approx(0.6931472, abs=1e-6)
    # binary: logit 0 -> p = 0.5 -> log 2 whatever the label; logit 2 for label 1 -> log(1 + e^-2)
    bin_logits = torch.tensor([[[[2.0, 2.0]]]])
    bin_label = torch.tensor([[[[1, 0]]]])
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(2.0)))) / 2
    assert segmentation_cross_entropy(bin_logits, bin_label).item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError, match="one channel"):
        segmentation_cross_entropy(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))


# --- FGSM --------------------------------------------------------------------------------------------------------


def test_fgsm_is_sign_step_of_the_input_gradient():
    """x_adv = x + eps * sign(grad_x CE): every voxel with a non-zero gradient moves by exactly eps."""
    model = _conv_model()
    x, label = _interior_batch()
    x_adv = FGSM(eps=EPS)(model, x, label)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    # independent input gradient
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xr), label[:, 0]), xr)
    nonzero = grad != 0
    assert nonzero.float().mean() > 0.9
    delta = x_adv - x
    assert delta.abs().max().item() == pytest.approx(EPS, abs=1e-6)
    torch.testing.assert_close(delta[nonzero].abs(), torch.full_like(delta[nonzero], EPS), atol=1e-6, rtol=0)
    assert torch.equal(torch.sign(delta[nonzero]), torch.sign(grad[nonzero]))
    assert torch.all(delta[~nonzero] == 0)


def test_fgsm_increases_the_loss_and_leaves_parameters_untouched():
    model = _conv_model(seed=1)
    x, label = _interior_batch(seed=1)
    x_adv = FGSM(eps=EPS)(model, x, label)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        before = F.cross_entropy(model(x), label[:, 0]).item()
        after = F.cross_entropy(model(x_adv), label[:, 0]).item()
    assert after > before + 1e-4


def test_fgsm_binary_logits_use_bce():
    """C = 1: the step follows the BCE gradient and raises the BCE loss."""
    model = _conv_model(seed=2, out_channels=1)
    x, _ = _interior_batch(seed=2)
    label = (x > 0.5).long()
    x_adv = FGSM(eps=EPS)(model, x, label)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(model(xr), label.float()), xr)
    torch.testing.assert_close(x_adv, (x + EPS * grad.sign()).clamp(0, 1))
    with torch.no_grad():
        assert F.binary_cross_entropy_with_logits(model(x_adv), label.float()) > F.binary_cross_entropy_with_logits(
            model(x), label.float()
        )


def test_fgsm_custom_loss_is_used():
    """A loss that rewards a high channel-0 logit: the step goes against d(logit_0)/dx, i.e. minus the sign."""
    model = _conv_model(seed=3)
    x, label = _interior_batch(seed=3)
    x_adv = FGSM(eps=EPS, loss=lambda logits, y: -logits[:, 0].sum())(model, x, label)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xr)[:, 0].sum(), xr)
    torch.testing.assert_close(x_adv, x - EPS * grad.sign())


def test_fgsm_clips_to_value_range():
    """Images near 0 and 1 stay in [0, 1] (some voxels are clipped); value_range=None does not clip."""
    model = _conv_model(seed=4)
    g = torch.Generator().manual_seed(4)
    x = torch.where(torch.rand(2, 1, 8, 8, generator=g) > 0.5, 0.99, 0.01)
    label = torch.randint(0, 3, (2, 1, 8, 8), generator=g)
    x_adv = FGSM(eps=EPS)(model, x, label)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv == 0.0).any() and (x_adv == 1.0).any()
    unclipped = FGSM(eps=EPS, value_range=None)(model, x, label)
    assert unclipped.min() < 0.0 and unclipped.max() > 1.0


def test_fgsm_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        FGSM(eps=-0.01)
    x, label = _interior_batch()
    torch.testing.assert_close(FGSM(eps=0.0)(_conv_model(), x, label), x)


# --- VAT ---------------------------------------------------------------------------------------------------------
# float64 throughout: with xi = 1e-6 spread over 64 voxels (~1e-7 a voxel) float32 cannot resolve x + xi * d
# around x ~ 0.5 (spacing 6e-8), and the float32 direction is largely rounding noise.


def test_vat_perturbation_has_norm_eps_per_sample():
    model = _smooth_model()
    x, _ = _interior_batch(dtype=torch.float64)
    torch.manual_seed(0)
    d = VAT().direction(model, x)
    torch.testing.assert_close(_per_sample_norm(d), torch.ones(2, dtype=torch.float64))
    torch.manual_seed(0)
    x_adv = VAT(eps=EPS)(model, x)
    assert not x_adv.requires_grad
    torch.testing.assert_close(_per_sample_norm(x_adv - x), torch.full((2,), EPS, dtype=torch.float64))
    torch.testing.assert_close(x_adv, x + EPS * d)  # same random start, same direction
    assert all(p.grad is None for p in model.parameters())


def test_vat_given_logits_equal_computed_logits():
    model = _smooth_model()
    x, _ = _interior_batch(dtype=torch.float64)
    torch.manual_seed(5)
    d_own = VAT().direction(model, x)
    torch.manual_seed(5)
    d_given = VAT().direction(model, x, logits=model(x))
    torch.testing.assert_close(d_own, d_given)


def test_vat_direction_beats_random_directions():
    """KL(p(x) || p(x + eps d)) of the VAT direction exceeds its mean over 20 random directions of norm eps."""
    model = _smooth_model(seed=1)
    x, _ = _interior_batch(seed=1, dtype=torch.float64)
    torch.manual_seed(1)
    with torch.no_grad():
        clean = model(x)
        kl_vat = kl_divergence(clean, model(VAT(eps=EPS)(model, x))).mean(dim=(1, 2))
        g = torch.Generator().manual_seed(11)
        kl_rand = torch.stack(
            [
                kl_divergence(clean, model(x + EPS * _unit(torch.randn(x.shape, generator=g, dtype=x.dtype)))).mean(
                    dim=(1, 2)
                )
                for _ in range(20)
            ]
        ).mean(0)
    assert (kl_vat > 1.2 * kl_rand).all(), (kl_vat, kl_rand)


def _hessian_top_eigenvector(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and top eigenvector of r -> KL(p(x) || p(x + r)) at r = 0, one sample (1, 1, H, W)."""
    clean = model(x).detach()
    n = x.numel()
    hess = torch.autograd.functional.hessian(
        lambda r: kl_divergence(clean, model(x + r.view_as(x))).mean(), torch.zeros(n, dtype=x.dtype)
    )
    evals, evecs = torch.linalg.eigh(hess)
    return evals, evecs[:, -1].view_as(x)


class _GlobalTermNet(nn.Module):
    """Small nonlinear segmenter plus a global-intensity term: the KL Hessian has a clear top eigenvalue."""

    def __init__(self, k: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 1))
        self.register_buffer("w", torch.tensor([1.0, -1.0, 0.0]))
        self.k = k

    def forward(self, x):
        return self.body(x) + self.k * torch.tanh(x.mean(dim=(2, 3), keepdim=True) - 0.5) * self.w.view(1, 3, 1, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_vat_power_iterations_converge_to_top_eigenvector(seed):
    """
    With lambda_2 / lambda_1 <= 0.3, five power iterations from two random starts agree (|cos| > 0.99) and match
    the top eigenvector of the explicit KL Hessian; one iteration does not (the iterations matter).
    """
    torch.manual_seed(seed)
    model = _GlobalTermNet().double()
    x, _ = _interior_batch(seed=seed, dtype=torch.float64)
    evals, v1 = _hessian_top_eigenvector(model, x[:1])
    assert evals[-2] / evals[-1] < 0.3  # the premise: a real eigengap
    dirs = {}
    for iters in (1, 5):
        for start in (100, 200):
            torch.manual_seed(start)
            dirs[iters, start] = VAT(power_iterations=iters).direction(model, x)
    assert (_cos(dirs[5, 100], dirs[5, 200]).abs() > 0.99).all()
    assert _cos(dirs[5, 100][:1], v1[None]).abs().item() > 0.99
    assert (_cos(dirs[1, 100], dirs[1, 200]).abs() < 0.9).all()


def test_vat_power_iterations_approach_top_eigenvector_monotonically():
    """
    On a plain small network (lambda_2 / lambda_1 ~ 0.89 here, so 5 iterations are NOT enough to converge) the
    alignment with the top Hessian eigenvector grows with the number of iterations from the same start.
    """
    model = _smooth_model(seed=0)
    torch.manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(1, 1, 8, 8, dtype=torch.float64)
    _, v1 = _hessian_top_eigenvector(model, x)
    cosines = []
    for iters in (1, 5, 20, 100):
        torch.manual_seed(7)
        cosines.append(_cos(VAT(power_iterations=iters).direction(model, x), v1[None]).abs().item())
    assert all(b >= a - 1e-9 for a, b in zip(cosines[:-1], cosines[1:], strict=True)), cosines
    assert cosines[0] < 0.9 and cosines[-1] > 0.99, cosines


def test_vat_clips_to_value_range():
    model = _smooth_model()
    x = torch.full((2, 1, 8, 8), 0.999, dtype=torch.float64)
    x[:, :, :4] = 0.001
    out = VAT(eps=1.0)(model, x)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out == 0.0).any() and (out == 1.0).any()


@pytest.mark.parametrize(
    "kwargs", [{"xi": 0.0}, {"xi": -1e-6}, {"eps": -0.1}, {"power_iterations": 0}, {"power_iterations": -1}]
)
def test_vat_bad_params(kwargs):
    with pytest.raises(ValueError, match="VAT needs"):
        VAT(**kwargs)
