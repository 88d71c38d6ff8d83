from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from attribution_helpers import tiny_backbone, tiny_classifier
from monai.visualize import CAM, GradCAM

from monai_wsss.attribution import PerSampleCAM, PerSampleGradCAM, max_normalizer


class PooledLinear(nn.Module):
    """features -> GAP -> linear ``fc`` (the layout MONAI's CAM expects)."""

    def __init__(self, spatial_dims: int, num_classes: int = 4):
        super().__init__()
        self.features = tiny_backbone(spatial_dims)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(2).mean(2))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_per_sample_cam_matches_one_at_a_time_monai(spatial_dims):
    torch.manual_seed(0)
    net = PooledLinear(spatial_dims)
    x = torch.rand(3, 1, *[10] * spatial_dims)
    classes = [3, 0, 2]
    ours = PerSampleCAM(net, "features", "fc")
    monai_cam = CAM(net, "features", "fc")
    raw = ours.compute_map(x, class_idx=classes)
    full = ours(x, class_idx=torch.tensor(classes))
    for i, k in enumerate(classes):
        torch.testing.assert_close(raw[i : i + 1], monai_cam.compute_map(x[i : i + 1], torch.tensor([k])))
        torch.testing.assert_close(full[i : i + 1], monai_cam(x[i : i + 1], torch.tensor([k])))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_per_sample_gradcam_matches_one_at_a_time_monai(spatial_dims):
    torch.manual_seed(0)
    net = PooledLinear(spatial_dims)
    x = torch.rand(3, 1, *[10] * spatial_dims)
    classes = [1, 3, 1]
    ours = PerSampleGradCAM(net, "features")
    monai_gc = GradCAM(net, "features")
    raw = ours.compute_map(x, class_idx=classes)
    for i, k in enumerate(classes):
        torch.testing.assert_close(raw[i : i + 1], monai_gc.compute_map(x[i : i + 1], class_idx=k))
        torch.testing.assert_close(ours(x, class_idx=classes)[i : i + 1], monai_gc(x[i : i + 1], class_idx=k))
    # one int for the whole batch still works as in MONAI
    torch.testing.assert_close(ours.compute_map(x, class_idx=2), monai_gc.compute_map(x, class_idx=2))


def test_differentiable_modes_keep_graph_and_values():
    net = tiny_classifier(2)
    x = torch.rand(2, 1, 12, 12, requires_grad=True)
    classes = [2, 0]
    cam_d = PerSampleCAM(net, "feature", "classifier", differentiable=True)
    gc_d = PerSampleGradCAM(net, "feature", differentiable=True)
    a = cam_d.compute_map(x, classes)
    g = gc_d.compute_map(x, classes)
    # for a bias-free classifier after GAP, Grad-CAM == ReLU(class map) / |spatial|
    torch.testing.assert_close(g, torch.relu(a) / 36)
    ref = net.eval().class_maps(x).detach()
    torch.testing.assert_close(a.detach(), torch.stack([ref[0, 2:3], ref[1, 0:1]]))
    torch.testing.assert_close(g.detach(), PerSampleGradCAM(net, "feature").compute_map(x.detach(), classes))
    (gx,) = torch.autograd.grad(g.sum() + a.sum(), x)
    assert gx.abs().sum() > 0
    out = cam_d(x, classes)
    assert out.requires_grad and out.shape == (2, 1, 12, 12) and float(out.detach().max()) <= 1.0
    torch.testing.assert_close(max_normalizer(torch.tensor([[[-1.0, 2.0]]])), torch.tensor([[[0.0, 2 / (2 + 1e-5)]]]))


def test_bad_class_index_length():
    net = tiny_classifier(2)
    with pytest.raises(ValueError, match="one entry per sample"):
        PerSampleCAM(net, "feature", "classifier").compute_map(torch.rand(3, 1, 8, 8), class_idx=[0, 1])
