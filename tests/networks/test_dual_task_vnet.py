from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import BasicUNet

from monai_wsss.networks import DualTaskNet, DualTaskVNet, ReferenceVNetFeatures, SelectOutput


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "spatial_dims, in_channels, out_channels, size",
    [(3, 1, 1, (32, 32, 16)), (2, 1, 1, (32, 32)), (2, 3, 2, (16, 48))],
)
def test_output_shapes(spatial_dims, in_channels, out_channels, size):
    net = DualTaskVNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, features=8)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, in_channels, *size))
    assert isinstance(out, tuple) and len(out) == 2
    seg, sdf = out
    assert seg.shape == sdf.shape == (2, out_channels, *size)


def test_default_3d_reference_network():
    net = DualTaskVNet()  # 3D, 1 -> 1, 16 base filters
    n_params = sum(p.numel() for p in net.parameters())
    assert 9.40e6 <= n_params <= 9.50e6
    assert isinstance(net.backbone, ReferenceVNetFeatures)
    assert net.seg_head.weight.shape == net.sdf_head.weight.shape == (1, 16, 1, 1, 1)
    net.train()
    seg, sdf = net(torch.randn(2, 1, 32, 32, 16))
    assert seg.shape == sdf.shape == (2, 1, 32, 32, 16)
    (seg.mean() + sdf.mean()).backward()
    assert net.seg_head.weight.grad is not None and net.sdf_head.weight.grad is not None


def test_sdf_is_tanh_bounded():
    net = DualTaskVNet(spatial_dims=2, features=4)
    with torch.no_grad():
        net.sdf_head.weight.mul_(1e3)  # large pre-activations saturate tanh
        net.eval()
        seg, sdf = net(torch.randn(2, 1, 32, 32) * 10)
        pre = net.sdf_head(net.backbone(torch.randn(2, 1, 32, 32) * 10))
    assert sdf.abs().max() <= 1.0
    assert pre.abs().max() > 1.0  # the bound is the tanh's, not the features'
    assert sdf.abs().max() > 0.99
    assert seg.abs().max() > 1.0  # segmentation logits are not squashed


def test_seg_only_shares_weights():
    full = DualTaskVNet(spatial_dims=2, features=4)
    seg_only = DualTaskVNet(spatial_dims=2, features=4, seg_only=True)
    assert list(full.state_dict()) == list(seg_only.state_dict())
    seg_only.load_state_dict(full.state_dict())  # strict
    full.eval()
    seg_only.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = seg_only(x)
        seg, _ = full(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, seg)
    # and back: weights of a seg-only model load into the dual-task one
    full2 = DualTaskVNet(spatial_dims=2, features=4)
    full2.load_state_dict(seg_only.state_dict())
    full2.eval()
    with torch.no_grad():
        torch.testing.assert_close(full2(x)[0], out)


@pytest.mark.parametrize("dropout, differ", [(0.5, True), (0.0, False)])
def test_dropout_train_vs_eval(dropout, differ):
    net = DualTaskVNet(spatial_dims=2, features=4, dropout=dropout)
    x = torch.randn(2, 1, 32, 32)
    net.train()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert (not torch.allclose(a[0], b[0])) == differ
    assert (not torch.allclose(a[1], b[1])) == differ
    net.eval()
    with torch.no_grad():
        c, d = net(x), net(x)
    torch.testing.assert_close(c[0], d[0], rtol=0, atol=0)
    torch.testing.assert_close(c[1], d[1], rtol=0, atol=0)


def test_dual_task_net_over_basic_unet():
    backbone = BasicUNet(spatial_dims=2, in_channels=1, out_channels=8, features=(8, 8, 16, 32, 64, 8))
    net = DualTaskNet(backbone, spatial_dims=2, feature_channels=8, out_channels=3)
    assert net.seg_head.weight.shape == (3, 8, 1, 1)
    assert net.sdf_head.weight.shape == (3, 8, 1, 1)
    x = torch.randn(2, 1, 32, 32)
    seg, sdf = net(x)
    assert seg.shape == sdf.shape == (2, 3, 32, 32)
    assert sdf.abs().max() <= 1.0
    # the heads are 1x1 convolutions of the backbone features
    net.eval()
    with torch.no_grad():
        feats = backbone(x)
        seg, sdf = net(x)
        torch.testing.assert_close(
            seg,
            torch.einsum("bchw,oc->bohw", feats, net.seg_head.weight[..., 0, 0])
            + net.seg_head.bias[None, :, None, None],
        )
        torch.testing.assert_close(sdf, torch.tanh(net.sdf_head(feats)))
    assert isinstance(DualTaskNet(backbone, 2, 8, seg_only=True)(x), torch.Tensor)


def test_select_output():
    net = DualTaskNet(nn.Conv2d(1, 4, 3, padding=1), spatial_dims=2, feature_channels=4)
    x = torch.randn(1, 1, 8, 8)
    seg, sdf = net(x)
    torch.testing.assert_close(SelectOutput(net)(x), seg)
    torch.testing.assert_close(SelectOutput(net, index=1)(x), sdf)
    sel = SelectOutput(net)
    assert [id(p) for p in sel.parameters()] == [id(p) for p in net.parameters()]
    plain = nn.Conv2d(1, 2, 1)
    torch.testing.assert_close(SelectOutput(plain, index=1)(x), plain(x))  # single tensor passes through


def test_select_output_list_outputs():
    class TwoOut(nn.Module):
        def forward(self, x):
            return [x + 1, x + 2]

    x = torch.zeros(2)
    torch.testing.assert_close(SelectOutput(TwoOut(), index=1)(x), x + 2)
    torch.testing.assert_close(SelectOutput(TwoOut(), index=0)(x), x + 1)


@pytest.mark.parametrize("dims", [1, 4])
def test_bad_spatial_dims(dims):
    with pytest.raises(ValueError, match="spatial_dims"):
        DualTaskVNet(spatial_dims=dims)
    with pytest.raises(ValueError, match="spatial_dims"):
        ReferenceVNetFeatures(spatial_dims=dims)
    with pytest.raises(ValueError, match="spatial_dims"):
        DualTaskNet(nn.Identity(), spatial_dims=dims, feature_channels=4)


@pytest.mark.parametrize("size", [(20, 36), (56, 56, 40)])
def test_sizes_not_multiple_of_16_are_padded_and_cropped(size):
    net = DualTaskVNet(spatial_dims=len(size), features=4 if len(size) == 2 else 2)
    net.eval()
    x = torch.randn(1, 1, *size)
    pad = [(-s) % 16 for s in size]
    padded = torch.nn.functional.pad(x, [p for s in reversed(pad) for p in (0, s)])
    with torch.no_grad():
        seg, sdf = net(x)
        seg_p, sdf_p = net(padded)
    assert seg.shape == sdf.shape == (1, 1, *size)
    crop = (..., *[slice(0, s) for s in size])
    torch.testing.assert_close(seg, seg_p[crop])
    torch.testing.assert_close(sdf, sdf_p[crop])
