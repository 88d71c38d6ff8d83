"""Tests of ``SegmentationEnsemble``: soft vote, member access, output modes, re-initialised copies, state dicts."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import UNet

from monai_wsss.networks import SegmentationEnsemble


def _unet() -> UNet:
    return UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_mean_output_is_mean_of_member_softmax(x):
    ens = SegmentationEnsemble(_unet(), num_models=3).eval()
    with torch.no_grad():
        out = ens(x)
        manual = sum(torch.softmax(m(x), dim=1) for m in ens.members) / 3
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out, manual)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 8, 8))


def test_member_argument_gives_that_members_logits(x):
    ens = SegmentationEnsemble(_unet(), num_models=2).eval()
    with torch.no_grad():
        for i in range(2):
            torch.testing.assert_close(ens(x, member=i), ens.members[i](x))
        assert not torch.allclose(ens(x, member=0), ens(x, member=1))


def test_members_and_logits_modes(x):
    ens = SegmentationEnsemble(_unet(), num_models=2, output="members").eval()
    with torch.no_grad():
        logits = torch.stack([m(x) for m in ens.members])
        probs = ens(x)
        ens.output = "logits"
        raw = ens(x)
    assert probs.shape == raw.shape == (2, 2, 3, 8, 8)
    torch.testing.assert_close(raw, logits)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=2))


def test_single_channel_members_use_sigmoid(x):
    """C = 1 (binary logits): the soft vote averages sigmoids, not a trivial softmax of ones."""
    members = [nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)]
    ens = SegmentationEnsemble(members=members)
    with torch.no_grad():
        expected = (torch.sigmoid(members[0](x)) + torch.sigmoid(members[1](x))) / 2
        torch.testing.assert_close(ens(x), expected)


def test_copies_are_reinitialised_and_independent():
    net = _unet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ens = SegmentationEnsemble(net, num_models=2)
    assert ens.num_models == 2
    w0, w1 = (dict(m.named_parameters()) for m in ens.members)
    assert w0.keys() == w1.keys() == dict(net.named_parameters()).keys()
    weights = [k for k, v in w0.items() if v.ndim > 1]  # conv kernels (random init)
    assert weights
    for k in weights:
        assert not torch.equal(w0[k], w1[k]), k
        assert not torch.equal(w0[k], before[k]), k
    # the source network is neither modified nor shared
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert not any(p is q for p in net.parameters() for q in ens.parameters())
    with torch.no_grad():
        next(ens.members[0].parameters()).add_(1.0)
    assert not torch.equal(next(ens.members[0].parameters()), next(ens.members[1].parameters()))


def test_explicit_members_are_used_as_given():
    members = [nn.Conv2d(1, 3, 1), nn.Conv2d(1, 3, 1), nn.Conv2d(1, 3, 1)]
    ens = SegmentationEnsemble(members=members)
    assert ens.num_models == 3
    assert all(a is b for a, b in zip(ens.members, members, strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"network": "unet", "num_models": 1},
        {"network": "unet", "num_models": 0},
        {"members": "one"},
        {"network": "unet", "members": "two"},
        {},
        {"network": "unet", "output": "median"},
    ],
)
def test_invalid_arguments(kwargs):
    resolved = dict(kwargs)
    if resolved.get("network") == "unet":
        resolved["network"] = _unet()
    if "members" in resolved:
        resolved["members"] = [_unet()] if resolved["members"] == "one" else [_unet(), _unet()]
    with pytest.raises(ValueError):
        SegmentationEnsemble(**resolved)


def test_param_groups_one_per_member():
    ens = SegmentationEnsemble(_unet(), num_models=3)
    groups = ens.param_groups()
    assert len(groups) == 3
    for group, member in zip(groups, ens.members, strict=True):
        assert set(group) == {"params"}
        assert [id(p) for p in group["params"]] == [id(p) for p in member.parameters()]
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in ens.parameters())
    torch.optim.Adam(groups, lr=1e-3)  # usable as optimiser groups (no parameter in two groups)


def test_state_dict_round_trip(x):
    ens = SegmentationEnsemble(_unet(), num_models=2).eval()
    torch.manual_seed(123)
    fresh = SegmentationEnsemble(_unet(), num_models=2).eval()
    with torch.no_grad():
        assert not torch.allclose(ens(x), fresh(x))
        fresh.load_state_dict(ens.state_dict())
        torch.testing.assert_close(fresh(x), ens(x))
        for i in range(2):
            torch.testing.assert_close(fresh(x, member=i), ens(x, member=i))
    assert all(k.startswith("members.") for k in ens.state_dict())
