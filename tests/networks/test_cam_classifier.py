from __future__ import annotations

import pytest
import torch
from attribution_helpers import tiny_classifier

from monai_wsss.networks import resnet_cam_classifier


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_logits_are_gap_of_class_maps(spatial_dims):
    net = tiny_classifier(spatial_dims).eval()
    x = torch.rand(2, 1, *[12] * spatial_dims)
    maps = net.class_maps(x)
    assert maps.shape == (2, 3, *[6] * spatial_dims)
    torch.testing.assert_close(net(x), maps.flatten(2).mean(2))
    # bias-free 1x1 classifier: GAP(w^T f) == w^T GAP(f)
    f = net.features(x).flatten(2).mean(2)
    torch.testing.assert_close(net(x), f @ net.classifier.weight.flatten(1).T)
    assert net.classifier.bias is None


def test_multilabel_soft_margin_training_step():
    net = tiny_classifier(2)
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]]).float()
    loss = torch.nn.MultiLabelSoftMarginLoss()(net(x), y)
    loss.backward()
    assert net.classifier.weight.grad is not None and torch.isfinite(loss)


@pytest.mark.parametrize("spatial_dims,feature_index,channels", [(2, -1, 512), (3, -2, 256)])
def test_resnet_recipe(spatial_dims, feature_index, channels):
    net = resnet_cam_classifier(spatial_dims, 1, 2, "resnet10", feature_index=feature_index).eval()
    assert net.classifier.in_channels == channels
    assert net(torch.rand(1, 1, *[32] * spatial_dims)).shape == (1, 2)
    with pytest.raises(ValueError, match="model_name"):
        resnet_cam_classifier(2, 1, 2, "resnet11")


@pytest.mark.parametrize("model_name,spatial_dims", [("resnet18", 2), ("resnet10", 3), ("resnet50", 2)])
def test_output_stride_16(model_name, spatial_dims):
    size = 64 if spatial_dims == 2 else 32
    for stride in (32, 16):
        net = resnet_cam_classifier(spatial_dims, 1, 2, model_name, output_stride=stride).eval()
        with torch.no_grad():
            maps = net.class_maps(torch.rand(1, 1, *[size] * spatial_dims))
        assert maps.shape[2:] == (size // stride,) * spatial_dims
