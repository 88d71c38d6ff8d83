from __future__ import annotations

import itertools

import pytest
import torch
from attribution_helpers import tiny_classifier

from monai_wsss.attribution import PeakResponseMapping, PeakStimulation, PeakStimulationFunction, find_peaks


def _planted(shape, centres, sigma=1.5):
    """(B, C, *shape) maps of Gaussian bumps; ``centres[b][c]`` lists the planted maxima of map (b, c)."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in shape], indexing="ij")
    out = torch.zeros(len(centres), len(centres[0]), *shape, dtype=torch.float64)
    for b, per_class in enumerate(centres):
        for c, pts in enumerate(per_class):
            for amp, p in pts:
                d2 = sum((g - q) ** 2 for g, q in zip(grids, p, strict=True))
                out[b, c] += amp * torch.exp(-d2 / (2 * sigma**2))
    return out


CASES = [
    (
        (24, 20),
        [[[(1.0, (5, 5)), (0.7, (15, 12))], [(2.0, (20, 3))]], [[(0.5, (10, 10))], [(1.0, (3, 16)), (0.8, (17, 15))]]],
    ),
    ((14, 12, 10), [[[(1.0, (3, 3, 3)), (0.6, (10, 8, 6))], [(1.5, (7, 2, 8))]]]),
]


@pytest.mark.parametrize("shape,centres", CASES)
def test_peaks_found_on_planted_maxima(shape, centres):
    crm = _planted(shape, centres).requires_grad_(True)
    mask = find_peaks(crm, win_size=3)
    found = {tuple(p) for p in torch.nonzero(mask).tolist()}
    planted = {(b, c, *p) for b, pc in enumerate(centres) for c, pts in enumerate(pc) for _, p in pts}
    assert found == planted
    peaks, scores = PeakStimulationFunction.apply(crm, 3, True)
    assert {tuple(p) for p in peaks.tolist()} == planted
    # score = mean of the peak values; gradient only at the peaks, 1 / N_c each
    for b, pc in enumerate(centres):
        for c, pts in enumerate(pc):
            vals = torch.stack([crm[(b, c, *p)] for _, p in pts]).detach()
            torch.testing.assert_close(scores[b, c].detach(), vals.mean())
    (g,) = torch.autograd.grad(scores.sum(), crm)
    assert torch.all(g[~mask] == 0)
    counts = mask.flatten(2).sum(2).float()
    for b, c, *p in planted:
        assert g[(b, c, *p)] == pytest.approx(1.0 / float(counts[b, c]))


@pytest.mark.parametrize("shape,centres", CASES)
def test_sub_pixel_factor_and_constant_maps(shape, centres):
    crm = _planted(shape, centres)
    peaks, _ = PeakStimulation(win_size=3, sub_pixel_locating_factor=4)(crm)
    planted = [(b, c, *p) for b, pc in enumerate(centres) for c, pts in enumerate(pc) for _, p in pts]
    assert len(peaks) == len(planted)
    # align_corners=True: up-sampled index q sits at q * (s - 1) / (4 s - 1) on the original grid
    mapped = [
        (q[0], q[1], *[qi * (n - 1) / (4 * n - 1) for qi, n in zip(q[2:], shape, strict=True)]) for q in peaks.tolist()
    ]
    for b, c, *p in planted:
        near = [q for q in mapped if q[:2] == (b, c) and max(abs(a - z) for a, z in zip(q[2:], p, strict=True)) < 0.5]
        assert len(near) == 1
    # a constant map has no peak above its median: its maxima are kept, the score is the constant
    _, s = PeakStimulationFunction.apply(torch.full((1, 1, 5, 5), 0.3), 3, True)
    torch.testing.assert_close(s, torch.tensor([[0.3]]))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_peak_backprop_mass_near_peak_and_batched(spatial_dims):
    # stride 1, two 3x3(x3) convs: receptive field radius 2 around each class-map location
    net = tiny_classifier(spatial_dims, num_classes=2, stride=1).double()
    size = 14 if spatial_dims == 2 else 8
    torch.manual_seed(0)
    x = torch.rand(2, 1, *[size] * spatial_dims, dtype=torch.float64)
    labels = torch.tensor([[1, 0], [1, 1]])
    prm = PeakResponseMapping(net, win_size=3, max_peaks=6)
    res = prm(x, labels)
    assert len(res) == 2
    for b, r in enumerate(res):
        assert len(r["peaks"]) > 0 and r["maps"].shape == (len(r["peaks"]), *[size] * spatial_dims)
        assert torch.all(labels[b, r["peaks"][:, 0]] == 1)
        for peak, m in zip(r["peaks"].tolist(), r["maps"], strict=True):
            c, *loc = peak
            assert m.sum() > 0
            box = tuple(slice(max(0, p - 2), p + 3) for p in loc)
            assert m[box].sum() / m.sum() == pytest.approx(1.0)  # all the mass within the receptive field
            # equals the one-peak-at-a-time gradient
            xi = x[b : b + 1].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(net.eval().class_maps(xi)[(0, c, *loc)], xi)
            torch.testing.assert_close(m, g[0].sum(0).clamp_min(0))
    # peaks of absent classes are dropped; an image with no positive class has no peak
    res = prm(x, torch.tensor([[0, 0], [0, 1]]))
    assert len(res[0]["peaks"]) == 0 and res[0]["maps"].shape[0] == 0


def test_peak_backprop_to_feature_map_and_training_scores():
    net = tiny_classifier(2, num_classes=2, stride=1)
    x = torch.rand(2, 1, 12, 12)
    prm = PeakResponseMapping(net, target_layer="backbone.0", sub_pixel_locating_factor=2, max_peaks=3)
    res = prm(x, torch.ones(2, 2))
    assert res[0]["maps"].shape[1:] == (12, 12) and res[0]["peaks"].max() < 24
    peaks, scores = prm.scores(x)
    loss = torch.nn.MultiLabelSoftMarginLoss()(scores, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    loss.backward()
    assert net.classifier.weight.grad is not None
    assert list(itertools.islice(peaks.shape, 1)) == [len(peaks)]
    with pytest.raises(ValueError, match="target_layer"):
        PeakResponseMapping(net, target_layer="nope")
