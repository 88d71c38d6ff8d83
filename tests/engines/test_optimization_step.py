"""The one optimisation step (monai_wsss.engines.step) and the trainer loss contract, against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from monai_wsss.engines import (
    GradScalerMixin,
    SemiSupervisedTrainer,
    amp_device_type,
    autocast,
    loss_terms,
    make_grad_scaler,
    optimization_step,
)

STAGES = (
    IterationEvents.FORWARD_COMPLETED,
    IterationEvents.LOSS_COMPLETED,
    IterationEvents.BACKWARD_COMPLETED,
    IterationEvents.MODEL_COMPLETED,
)


class ContractLoss(nn.Module):
    """``loss = mean(pred^2)`` is optimised; ``aux = 100 * mean(pred)`` is only logged. Records its call."""

    def __init__(self) -> None:
        super().__init__()
        self.kwargs: list[dict] = []

    def forward(self, pred, target, **kwargs):
        self.kwargs.append(kwargs)
        return {"loss": (pred**2).mean(), "aux": 100.0 * pred.mean(), "count": 7}


def _one_weight_trainer(loss, w: float = 2.0, x: float = 3.0, lr: float = 0.01, **kwargs):
    net = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(w)
    batch = {"image": torch.full((1, 1, 1, 1), x), "label": torch.zeros(1, 1, 1, 1)}
    trainer = SemiSupervisedTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=1,
        train_data_loader=[batch],
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=lr),
        loss_function=loss,
        unsup_weight=0.25,
        **kwargs,
    )
    return trainer, net


def test_fixed_order_and_loss_contract_by_hand():
    """
    One weight w = 2, one voxel x = 3: pred = 6, loss = pred^2 = 36, d loss / d w = 2 pred x = 36, so SGD (lr 0.01)
    gives w = 2 - 0.36 = 1.64. Had ``aux = 100 pred`` been optimised too, the gradient would be 36 + 300 = 336.
    A stale gradient of 1000 before the step must be cleared by ``zero_grad``; the network starts in eval mode.
    """
    loss = ContractLoss()
    trainer, net = _one_weight_trainer(loss)
    net.weight.grad = torch.full_like(net.weight, 1000.0)
    net.eval()
    seen: list[tuple] = []

    def record(engine, ev):
        out = engine.state.output
        seen.append(
            (
                ev.name,
                net.training,
                float(net.weight.grad.sum()) if net.weight.grad is not None else None,
                float(net.weight.detach().sum()),
                sorted(k for k in ("loss", "aux", "count") if k in out),
            )
        )

    for ev in STAGES:
        trainer.add_event_handler(ev, record, ev)
    trainer.run()

    assert [s[0] for s in seen] == [ev.name for ev in STAGES]
    assert all(s[1] for s in seen)  # train mode from the start of the step
    forward, loss_done, backward, model = seen
    assert forward[2] == 0.0 and forward[4] == []  # zero_grad before the forward; no terms yet
    assert loss_done[4] == ["aux", "count", "loss"]  # every term stored before LOSS_COMPLETED
    assert loss_done[2] == 0.0  # ... and no backward yet
    assert backward[2] == pytest.approx(36.0) and backward[3] == pytest.approx(2.0)  # grad of "loss" only, no step
    assert model[3] == pytest.approx(1.64)  # the SGD step on "loss" alone
    out = trainer.state.output
    assert out["loss"].item() == pytest.approx(36.0) and out["loss"].requires_grad
    assert out["aux"].item() == pytest.approx(600.0) and not out["aux"].requires_grad
    assert out["count"] == 7
    assert net.weight.item() == pytest.approx(1.64)
    # the trainer called the loss with its named tensors
    assert loss.kwargs == [{"num_labeled": 1, "unsup_weight": 0.25}]


def test_tensor_loss_is_the_optimised_entry():
    trainer, net = _one_weight_trainer(lambda pred, target, **kw: (pred**2).mean())
    trainer.run()
    assert trainer.state.output["loss"].item() == pytest.approx(36.0)
    assert net.weight.item() == pytest.approx(1.64)


def test_falling_loss_on_one_weight():
    """Minimising (w x - 1)^2 by SGD: the loss falls geometrically, by (1 - 2 lr x^2)^2 per step (hand-computed)."""
    net = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(2.0)
    x = 3.0
    trainer = SemiSupervisedTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=5,
        train_data_loader=[{"image": torch.full((1, 1, 1, 1), x), "label": torch.ones(1, 1, 1, 1)}] * 5,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        loss_function=lambda pred, target, **kw: {"loss": ((pred - target) ** 2).mean()},
    )
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    factor = (1 - 2 * 0.01 * x**2) ** 2  # 0.6724
    expected = [25.0 * factor**k for k in range(5)]
    assert losses == pytest.approx(expected, rel=1e-5)


def test_loss_terms_contract_and_errors():
    t = torch.tensor(2.0, requires_grad=True)
    assert loss_terms(t) == {"loss": t}
    assert loss_terms({"loss_d": t, "x": 1}, loss_key="loss_d") == {"loss_d": t, "x": 1}
    with pytest.raises(ValueError, match="'loss'"):
        loss_terms({"loss_sup": t})
    with pytest.raises(ValueError, match="scalar"):
        loss_terms(torch.ones(2, 3))
    with pytest.raises(TypeError, match="tensor or a dict"):
        loss_terms(3.0)
    with pytest.raises(TypeError, match="must be a tensor"):
        loss_terms({"loss": 3.0})


class _Engine(Engine):
    """The smallest engine optimization_step needs: IterationEvents, amp flags and a dict output."""

    def __init__(self, amp: bool, device: str | None = "cpu"):
        super().__init__(lambda e, b: None)
        self.register_events(*IterationEvents)
        self.amp, self.amp_kwargs, self.optim_set_to_none = amp, {}, False
        self.state.device = None if device is None else torch.device(device)
        self.state.output = {}


def test_step_outside_a_trainer_and_its_amp_errors():
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -1.0]]))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x = torch.tensor([[2.0, 1.0]])

    def closure():
        return (net(x) ** 2).sum()  # (2 - 1)^2 = 1, grad = 2 * 1 * x = [4, 2]

    engine = _Engine(amp=False)
    optimization_step(engine, closure, net, opt)
    torch.testing.assert_close(net.weight.detach(), torch.tensor([[1.0 - 2.0, -1.0 - 1.0]]))

    amp_engine = _Engine(amp=True)
    with pytest.raises(RuntimeError, match="GradScaler"):
        optimization_step(amp_engine, closure, net, opt, scaler=None)
    scaler = make_grad_scaler(amp_engine)
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()  # a CPU scaler that really scales
    assert make_grad_scaler(engine) is None
    with autocast(amp_engine):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(engine):
        assert not torch.is_autocast_enabled("cpu")

    with pytest.raises(ValueError, match="'meta'"):
        amp_device_type(_Engine(amp=True, device="meta"))
    with pytest.raises(ValueError, match="device"):
        amp_device_type(_Engine(amp=True, device=None))


def test_grad_scaler_mixin_needs_a_trainer():
    class NotATrainer(GradScalerMixin, Engine):
        pass

    with pytest.raises(TypeError, match="Trainer"):
        NotATrainer(lambda e, b: None).run()
