"""The pix2pix constant-then-linear learning-rate schedule."""

from __future__ import annotations

import io

import pytest
import torch

from monai_wsss.optimizers import ConstantThenLinearDecay, constant_then_linear_factor


def test_factor_values():
    # 2 constant epochs, then 3 decay epochs: 1, 1, 3/4, 2/4, 1/4
    assert [constant_then_linear_factor(e, 2, 3) for e in range(5)] == [1.0, 1.0, 0.75, 0.5, 0.25]
    assert constant_then_linear_factor(10, 2, 3) == 0.0
    with pytest.raises(ValueError):
        constant_then_linear_factor(0, -1, 3)


def test_scheduler_steps_and_resumes():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=2e-4)
    sched = ConstantThenLinearDecay(opt, constant_epochs=2, decay_epochs=3)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 1.5e-4, 1e-4, 5e-5])
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    resumed = ConstantThenLinearDecay(opt2, constant_epochs=2, decay_epochs=3)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.last_epoch == 5
    assert resumed.get_last_lr() == pytest.approx(sched.get_last_lr())
