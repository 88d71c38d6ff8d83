from __future__ import annotations

import pytest
import torch
from attribution_helpers import tiny_classifier

from monai_wsss.attribution import AdvCAM, advcam_reference


def _model(spatial_dims, seed=0):
    return tiny_classifier(spatial_dims, num_classes=3, seed=seed).double()


@pytest.mark.parametrize(
    "spatial_dims,mask_mode,scales,flip,fc_layers,steps",
    [
        (2, "running_sum", (1.0, 0.5, 1.5, 2.0), True, "classifier", 27),  # the paper's settings
        (2, "previous", (1.0,), False, "classifier", 4),
        (2, "union", (1.0, 1.5), True, None, 4),
        (3, "running_sum", (1.0,), True, "classifier", 4),
    ],
)
def test_batched_equals_one_at_a_time_reference(spatial_dims, mask_mode, scales, flip, fc_layers, steps):
    net = _model(spatial_dims)
    net.train()  # AdvCAM must switch to eval itself and restore the mode
    size = 12 if spatial_dims == 2 else 8
    torch.manual_seed(1)
    img = torch.rand(3, 1, *[size] * spatial_dims, dtype=torch.float64)
    img[1] = img[1] * 3 - 1  # a different intensity range per image: per-instance clamp
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0]])  # the last image is a negative
    adv = AdvCAM(net, "feature", fc_layers, steps=steps, mask_mode=mask_mode, scales=scales, flip=flip, max_instances=3)
    out = adv(img, labels)
    assert net.training
    assert out.shape == (3, 3, *[size] * spatial_dims)
    assert torch.all(out[2] == 0) and torch.all(out[0, 1] == 0)
    for b, k in torch.nonzero(labels).tolist():
        ref = advcam_reference(adv, img[b], k)
        torch.testing.assert_close(out[b, k], ref, atol=1e-9, rtol=1e-7)
    # the attack changes the map (AdvCAM differs from the plain CAM)
    plain = AdvCAM(net, "feature", fc_layers, steps=0, scales=scales, flip=flip)(img, labels)
    assert (out - plain).abs().max() > 1e-4


def test_ascent_step_has_linf_norm_xi():
    net = _model(2)
    adv = AdvCAM(net, steps=1, step_size=0.08, clamp=False)
    grad = torch.randn(4, 1, 9, 9, dtype=torch.float64) * torch.tensor([1e-3, 1.0, 50.0, 7.0]).view(4, 1, 1, 1).double()
    step = adv.ascent_step(grad)
    torch.testing.assert_close(step.abs().flatten(1).max(1)[0], torch.full((4,), 0.08, dtype=torch.float64))
    torch.testing.assert_close(step / 0.08, grad / grad.abs().flatten(1).max(1)[0].view(4, 1, 1, 1))
    # inside the attack: the input moves by exactly xi in L-inf per instance (no clamp)
    seen = []
    handle = net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    img = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    adv.attack(img, torch.tensor([0, 2]))
    handle.remove()
    assert len(seen) == 2
    torch.testing.assert_close((seen[1] - seen[0]).abs().flatten(1).max(1)[0], torch.full((2,), 0.08).double())


def test_clamp_keeps_image_range():
    net = _model(2)
    adv = AdvCAM(net, steps=3, step_size=5.0)
    seen = []
    handle = net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    img = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    img[1] *= 0.25
    adv.attack(img, torch.tensor([1, 1]))
    handle.remove()
    for x in seen:
        for i in range(2):
            assert x[i].min() >= img[i].min() - 1e-12 and x[i].max() <= img[i].max() + 1e-12


def test_mask_regulariser_acts_only_above_tau():
    net = _model(2)
    adv = AdvCAM(net, reg_weight=7.0, mask_threshold=0.5)
    torch.manual_seed(0)
    prev = torch.rand(2, 1, 6, 6, dtype=torch.float64) * torch.tensor([1.0, 4.0]).view(2, 1, 1, 1).double()
    mask = adv.strong_region(prev)
    expected = prev / prev.flatten(1).max(1)[0].view(2, 1, 1, 1) > 0.5
    assert torch.equal(mask, expected) and 0 < mask.sum() < mask.numel()
    a_0 = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    a_t = (a_0 + torch.randn_like(a_0)).requires_grad_(True)
    logits = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([2, 0])
    loss = adv.objective(logits, a_t, a_0, mask.double(), idx)
    g_a, g_l = torch.autograd.grad(loss.sum(), (a_t, logits))
    assert torch.all(g_a[~mask] == 0)
    torch.testing.assert_close(g_a[mask], -7.0 * torch.sign(a_t - a_0).detach()[mask])
    torch.testing.assert_close(g_l, torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, -1.0]], dtype=torch.float64))
    # an all-zero map marks nothing
    assert not adv.strong_region(torch.zeros(1, 1, 4, 4)).any()


def test_mask_modes_and_options_validated():
    net = _model(2)
    with pytest.raises(ValueError):
        AdvCAM(net, mask_mode="sometimes")
    with pytest.raises(ValueError, match="scales"):
        AdvCAM(net, scales=(1.0, -0.5))
    with pytest.raises(ValueError, match="labels"):
        AdvCAM(net, steps=1)(torch.rand(2, 1, 8, 8).double(), torch.ones(3, 3))


def test_parameters_frozen_during_the_attack_and_restored():
    net = _model(2)
    net.classifier.weight.requires_grad_(False)  # a parameter frozen by the user stays frozen
    seen = []

    def record(module, args, output):
        seen.append([p.requires_grad for p in net.parameters()])

    handle = net.classifier.register_forward_hook(record)
    adv = AdvCAM(net, steps=2)
    adv(torch.rand(2, 1, 12, 12, dtype=torch.float64), torch.tensor([[1, 0, 1], [0, 1, 0]]))
    handle.remove()
    assert len(seen) >= 3 and not any(any(step) for step in seen)  # no weight gradient in any of the 3 passes
    assert all(p.grad is None for p in net.parameters())
    assert [name for name, p in net.named_parameters() if not p.requires_grad] == ["classifier.weight"]
    # restored on error too
    with pytest.raises(ValueError, match="labels"):
        adv(torch.rand(2, 1, 12, 12).double(), torch.ones(3, 3))
    broken = AdvCAM(net, steps=1, scales=(1.0,))
    broken.attack = None  # type: ignore[assignment]
    with pytest.raises(TypeError):
        broken(torch.rand(1, 1, 12, 12, dtype=torch.float64), torch.tensor([[1, 0, 0]]))
    assert [name for name, p in net.named_parameters() if not p.requires_grad] == ["classifier.weight"]
