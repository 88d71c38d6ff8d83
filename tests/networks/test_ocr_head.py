"""ObjectContextualHead / ObjectContextualNet / MultiScaleFeatures: hand-computed regions and relation, shapes in 2D and
3D on two backbones, the auxiliary output in training only, deep copies."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.networks.nets import BasicUNet, ResNetFeatures, SegResNet

from monai_wsss.networks import MultiScaleFeatures, ObjectContextualHead, ObjectContextualNet, region_representations


def test_region_representations_are_a_softmax_over_pixels_of_each_region():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [2.0, 0.5]]]])  # (1, C=2, 2, 2)
    logits = torch.tensor([[[[0.0, 1.0], [2.0, 0.0]], [[-1.0, 0.0], [0.0, 3.0]]]])  # (1, K=2, 2, 2)
    pixels = features.flatten(2)[0]  # (C, 4)
    expected = []
    for k in range(2):
        e = [math.exp(v) for v in logits.flatten(2)[0, k].tolist()]
        w = [v / sum(e) for v in e]
        expected.append([sum(w[i] * pixels[c, i].item() for i in range(4)) for c in range(2)])
    got = region_representations(features, logits)
    assert got.shape == (1, 2, 2)
    assert torch.allclose(got[0], torch.tensor(expected), atol=1e-6)
    # a scale sharpens the spatial softmax towards the region's arg-max pixel
    sharp = region_representations(features, logits, scale=50.0)
    assert torch.allclose(sharp[0, 1], features[0, :, 1, 1], atol=1e-4)
    with pytest.raises(ValueError, match="spatial shape"):
        region_representations(features, logits[..., :1])


def test_pixel_region_relation_is_a_scaled_softmax_over_regions():
    head = ObjectContextualHead(2, in_channels=3, aux_in_channels=3, num_classes=2, mid_channels=4, key_channels=4)
    for name in ("query", "key", "value", "context_up"):
        setattr(head, name, nn.Identity())
    torch.manual_seed(0)
    pixels, regions = torch.randn(1, 4, 2, 3), torch.randn(1, 2, 4)  # (B, C, 2, 3), (B, K, C)
    got = head.relation(pixels, regions)
    flat = pixels.flatten(2)[0].T  # (N, C)
    weights = torch.softmax(flat @ regions[0].T / math.sqrt(4), dim=1)  # over the K regions
    expected = (weights @ regions[0]).T.reshape(1, 4, 2, 3)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_ocr_on_basic_unet_decoder_stages(dims):
    torch.manual_seed(0)
    size = (32,) * dims
    backbone = MultiScaleFeatures(
        BasicUNet(dims, 1, 2, features=(4, 4, 8, 8, 16, 4)), ["upcat_2", "upcat_1"], remove=["final_conv"]
    )
    net = ObjectContextualNet(backbone, dims, [4, 4], num_classes=3, mid_channels=8, key_channels=4)
    main, aux = net(torch.randn(2, 1, *size))
    assert main.shape == aux.shape == (2, 3, *size)
    net.eval()
    assert net(torch.randn(1, 1, *size)).shape == (1, 3, *size)
    # every parameter takes part (final_conv removed), as DistributedDataParallel requires
    net.train()
    main, aux = net(torch.randn(2, 1, *size))
    (main.sum() + aux.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())
    # a deep copy keeps its own hooks
    twin = copy.deepcopy(net).eval()
    assert twin(torch.randn(1, 1, *size)).shape == (1, 3, *size)


def test_ocr_on_resnet_features_2d_and_segresnet_3d():
    torch.manual_seed(0)
    resnet = ResNetFeatures("resnet10", pretrained=False, spatial_dims=2, in_channels=1)
    net = ObjectContextualNet(resnet, 2, [64, 64, 128, 256, 512], num_classes=2, mid_channels=8, key_channels=4)
    main, aux = net(torch.randn(2, 1, 64, 64))
    assert main.shape == aux.shape == (2, 2, 64, 64)
    seg = MultiScaleFeatures(SegResNet(3, 8, 1, 2), ["up_layers.1", "up_layers.2"], remove=["conv_final"])
    net3 = ObjectContextualNet(seg, 3, [16, 8], num_classes=2, mid_channels=8, key_channels=4).eval()
    assert net3(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_aux_output_enters_the_loss_with_its_weight_and_is_absent_at_inference():
    torch.manual_seed(0)
    backbone = MultiScaleFeatures(BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4)), ["upcat_2", "upcat_1"])
    net = ObjectContextualNet(backbone, 2, [4, 4], num_classes=2, mid_channels=8, key_channels=4)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32))
    criterion = DiceCELoss(to_onehot_y=True, softmax=True)
    outputs = net(x)
    total = DeepSupervisionLoss(criterion, weights=[1.0, 0.4])(outputs, y)
    assert torch.allclose(total, criterion(outputs[0], y) + 0.4 * criterion(outputs[1], y))
    total.backward()
    assert net.head.aux_head[1].weight.grad.abs().sum() > 0
    single = ObjectContextualNet(
        MultiScaleFeatures(BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4)), ["upcat_2", "upcat_1"]),
        2,
        [4, 4],
        num_classes=2,
        mid_channels=8,
        key_channels=4,
        aux_output=False,
    )
    single.load_state_dict(net.state_dict())  # same parameters in both modes
    assert isinstance(single(x), torch.Tensor)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="not sub-modules"):
        MultiScaleFeatures(BasicUNet(2, 1, 2), ["nope"])
    with pytest.raises(ValueError, match="outside"):
        ObjectContextualNet(nn.Identity(), 2, [4, 4], num_classes=2, aux_index=-3)
    with pytest.raises(ValueError, match="spatial_dims"):
        ObjectContextualNet(nn.Identity(), 4, [4, 4], num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        ObjectContextualHead(2, 4, 4, num_classes=1)
