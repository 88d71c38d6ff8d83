"""LocallyAdaptiveLoss against hand computations (2D one window, Minkowski pooling of two windows, 3D), ignored
pixels, training on a real crop, and bad windows."""

from __future__ import annotations

import json
import math
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_wsss.losses import LocallyAdaptiveLoss, WeightedSumLoss, chessboard_gaussian


def _window_loss(probs, labels, centre, sigma):
    """Sum over the classes present of -log(Gaussian-weighted mean of the class's own probability)."""
    total = 0.0
    for c in sorted(set(labels.values())):
        pixels = [p for p, lab in labels.items() if lab == c]
        w = [math.exp(-(max(abs(a - b) for a, b in zip(p, centre, strict=True)) ** 2) / (2 * sigma**2)) for p in pixels]
        pooled = sum(wi * probs[(c, *p)] for wi, p in zip(w, pixels, strict=True)) / sum(w)
        total -= math.log(pooled)
    return total


def test_one_window_two_classes_4x4_by_hand():
    torch.manual_seed(0)
    p1 = torch.rand(4, 4) * 0.8 + 0.1
    probs = torch.stack([1 - p1, p1])[None]  # (1, 2, 4, 4)
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[..., 2:] = 1
    lab = {(i, j): int(labels[0, 0, i, j]) for i in range(4) for j in range(4)}
    pr = {(c, i, j): float(probs[0, c, i, j]) for c in range(2) for i in range(4) for j in range(4)}
    expected = _window_loss(pr, lab, (1.5, 1.5), sigma=1.0)
    loss = LocallyAdaptiveLoss(window_size=4, stride=4, sigma=1.0, softmax=False)
    assert loss(probs, labels).item() == pytest.approx(expected, rel=1e-5)
    # one window: Minkowski pooling of one value is the value, whatever k
    squared = LocallyAdaptiveLoss(4, 4, sigma=1.0, k=2, softmax=False)
    assert squared(probs, labels).item() == pytest.approx(expected, rel=1e-5)


def test_minkowski_pooling_of_two_windows():
    torch.manual_seed(1)
    p1 = torch.rand(4, 8) * 0.8 + 0.1
    probs = torch.stack([1 - p1, p1])[None]
    labels = (torch.rand(1, 1, 4, 8) > 0.5).long()
    lab = {(i, j): int(labels[0, 0, i, j]) for i in range(4) for j in range(8)}
    pr = {(c, i, j): float(probs[0, c, i, j]) for c in range(2) for i in range(4) for j in range(8)}
    windows = []
    for j0 in (0, 4):
        sub = {(i, j - j0): v for (i, j), v in lab.items() if j0 <= j < j0 + 4}
        subp = {(c, i, j - j0): v for (c, i, j), v in pr.items() if j0 <= j < j0 + 4}
        windows.append(_window_loss(subp, sub, (1.5, 1.5), sigma=1.0))
    k = 5.0
    expected = ((windows[0] ** k + windows[1] ** k) / 2) ** (1 / k)
    got = LocallyAdaptiveLoss(window_size=4, stride=4, sigma=1.0, k=k, softmax=False)(probs, labels)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected > sum(windows) / 2  # k > 1 weighs the worse window more than a mean


def test_3d_window_by_hand_and_reductions():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 3, 3, 3)
    labels = torch.randint(0, 3, (2, 1, 3, 3, 3))
    probs = torch.softmax(logits, 1)
    expected = []
    for b in range(2):
        lab = {(i, j, k): int(labels[b, 0, i, j, k]) for i in range(3) for j in range(3) for k in range(3)}
        pr = {(c, i, j, k): float(probs[b, c, i, j, k]) for c in range(3) for (i, j, k) in lab}
        expected.append(_window_loss(pr, lab, (1.0, 1.0, 1.0), sigma=0.75))
    loss = LocallyAdaptiveLoss(window_size=3, stride=3, reduction="none")  # sigma default: 3 / 4
    assert torch.allclose(loss(logits, labels), torch.tensor(expected), rtol=1e-5)
    assert LocallyAdaptiveLoss(3, 3)(logits, labels).item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert LocallyAdaptiveLoss(3, 3, reduction="sum")(logits, labels).item() == pytest.approx(sum(expected), rel=1e-5)


def test_chessboard_gaussian_weights():
    w = chessboard_gaussian((3, 3), sigma=1.0)
    assert w[1, 1] == 1.0
    assert torch.allclose(w[0], torch.full((3,), math.exp(-0.5)))  # the whole border is at distance 1


def test_ignored_pixels_get_no_gradient():
    torch.manual_seed(3)
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    labels = torch.randint(0, 2, (1, 1, 8, 8))
    labels[..., :3, :] = 255
    LocallyAdaptiveLoss(4, 2, ignore_index=255)(logits, labels).backward()
    assert logits.grad[..., :3, :].abs().max() == 0
    assert logits.grad[..., 3:, :].abs().max() > 0
    everything_ignored = torch.full_like(labels, 255)
    assert LocallyAdaptiveLoss(4, 2, ignore_index=255)(logits, everything_ignored).item() == 0.0


def test_loss_falls_training_on_a_real_crop(tiny_tissue_dataset):
    """A small conv net fitted with the loss alone on a real grey / white matter slice (MNI152, nilearn)."""
    meta = json.load(open(os.path.join(tiny_tissue_dataset, "dataset.json")))
    item = meta["training"][0]
    image = np.asarray(nib.load(os.path.join(tiny_tissue_dataset, item["image"])).dataobj, dtype=np.float32)[..., 1]
    label = np.asarray(nib.load(os.path.join(tiny_tissue_dataset, item["label"])).dataobj)[..., 1]
    x = torch.from_numpy(image / image.max())[None, None]
    y = torch.from_numpy(label.astype(np.int64))[None, None]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
    )
    loss = LocallyAdaptiveLoss(window_size=8, stride=4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    values = []
    for _ in range(40):
        opt.zero_grad()
        value = loss(net(x), y)
        value.backward()
        opt.step()
        values.append(value.item())
    assert values[-1] < 0.6 * values[0]


def test_bad_windows_and_targets_are_refused():
    with pytest.raises(ValueError, match="larger than the image"):
        LocallyAdaptiveLoss(window_size=16)(torch.randn(1, 2, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="Minkowski"):
        LocallyAdaptiveLoss(k=0.5)
    with pytest.raises(ValueError, match="positive"):
        LocallyAdaptiveLoss(window_size=0)
    with pytest.raises(ValueError, match="one channel"):
        LocallyAdaptiveLoss(4)(torch.randn(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))


def test_weighted_sum_loss():
    a, b = torch.nn.L1Loss(), torch.nn.MSELoss()
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(WeightedSumLoss([a, b], [1.0, 0.5])(x, y), a(x, y) + 0.5 * b(x, y))
    with pytest.raises(ValueError, match="weights"):
        WeightedSumLoss([a, b], [1.0])
