"""Tests of ``frozen_norm_statistics``: running statistics untouched, outputs unchanged, flags restored."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from monai_wsss.networks import frozen_norm_statistics


@pytest.mark.parametrize("norm", ["batch", ("instance", {"track_running_stats": True})])
def test_statistics_untouched_outputs_unchanged(norm):
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(4, 8), strides=(2,), norm=norm).train()
    x = torch.rand(2, 1, 16, 16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with frozen_norm_statistics(net):
        y_frozen = net(x)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    y = net(x)  # outside the block the statistics move again
    assert torch.allclose(y, y_frozen)
    moved = [k for k, v in net.state_dict().items() if not torch.equal(before[k], v)]
    assert any("running_mean" in k for k in moved)
    net.eval()  # inference uses the running statistics, inside the block too
    with frozen_norm_statistics(net):
        y_eval_frozen = net(x)
    assert torch.equal(net(x), y_eval_frozen) and not torch.allclose(net(x), y)


def test_statistics_restored_after_an_error():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2, momentum=None))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError), frozen_norm_statistics(net):
        net(torch.rand(3, 1, 4, 4) + 5.0)
        raise RuntimeError("inside")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
