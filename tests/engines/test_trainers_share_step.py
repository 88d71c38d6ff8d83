"""Every monai_wsss trainer goes through the one optimisation step: event order, AMP through the GradScaler on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from monai.networks.nets import PatchDiscriminator

from monai_wsss.data import MultiStreamLoader
from monai_wsss.engines import CoTrainingEvents, CoTrainingTrainer, Pix2PixTrainer, SemiSupervisedTrainer
from monai_wsss.losses import ConditionalGANLoss, segmentation_cross_entropy
from monai_wsss.losses.adversarial import FGSM, VAT
from monai_wsss.networks import MaskToImageGenerator, SegmentationEnsemble

F, L, B, M = "FORWARD_COMPLETED", "LOSS_COMPLETED", "BACKWARD_COMPLETED", "MODEL_COMPLETED"
STAGES = [getattr(IterationEvents, n) for n in (F, L, B, M)]


def _squares(seed: int, n: int, b: int, size: int = 12, labelled: bool = True) -> list[dict]:
    """Dark noisy images with a bright square; the label is the square."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        img = 0.1 + 0.1 * torch.rand(b, 1, size, size, generator=g)
        lab = torch.zeros(b, 1, size, size, dtype=torch.long)
        for s in range(b):
            r, c = torch.randint(0, size - 4, (2,), generator=g).tolist()
            img[s, :, r : r + 4, c : c + 4] += 0.6
            lab[s, :, r : r + 4, c : c + 4] = 1
        out.append({"image": img, "label": lab} if labelled else {"image": img})
    return out


def _semi(iterations: int = 3, lr: float = 1e-2, **kwargs):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    labelled, unlabelled = _squares(1, iterations, 2), _squares(2, iterations, 2, labelled=False)
    batches = [{**lab, "image_u": unl["image"]} for lab, unl in zip(labelled, unlabelled, strict=True)]

    def loss(pred, target, num_labeled, unsup_weight):
        sup = segmentation_cross_entropy(pred[:num_labeled], target)
        return {"loss": sup, "loss_sup": sup}

    trainer = SemiSupervisedTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=iterations,
        train_data_loader=batches,
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), lr),
        loss_function=loss,
        **kwargs,
    )
    return trainer, (net,)


def _member() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 1))


def _cot_streams(iterations: int) -> dict:
    return {
        "_0": _squares(1, iterations, 2),
        "_1": _squares(2, iterations, 2),
        "_u": _squares(3, iterations, 2, labelled=False),
    }


def _cot(iterations: int = 3, **kwargs):
    torch.manual_seed(0)
    net = SegmentationEnsemble(_member(), num_models=2)
    trainer = CoTrainingTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=iterations,
        train_data_loader=MultiStreamLoader(_cot_streams(iterations), iterations),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-2),
        fgsm=FGSM(eps=0.05),
        vat=VAT(xi=1e-3, eps=0.05),
        cot_weight=0.5,
        adv_weight=0.1,
        **kwargs,
    )
    return trainer, (net,)


def _pairs(n: int = 4, size: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        mask = torch.zeros(1, size, size)
        y, x = torch.randint(2, size - 6, (2,), generator=g).tolist()
        mask[:, y : y + 5, x : x + 5] = 1
        items.append({"label": mask, "image": 0.8 * mask - 0.4 + 0.05 * torch.randn(1, size, size, generator=g)})
    return items


def _pix2pix(iterations: int = 3, loss_function=None, **kwargs):
    torch.manual_seed(0)
    g = MaskToImageGenerator(2, num_classes=2, out_channels=1, channels=(8, 16), strides=(2,), dropout=0.0)
    d = PatchDiscriminator(2, num_layers_d=1, channels=8, in_channels=3)
    loader = torch.utils.data.DataLoader(_pairs(), batch_size=2, shuffle=False)
    trainer = Pix2PixTrainer(
        "cpu",
        max_epochs=1,
        train_data_loader=MultiStreamLoader({"": loader}, epoch_length=iterations),
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-3, betas=(0.5, 0.999)),
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)),
        loss_function=loss_function or ConditionalGANLoss(lambda_l1=10.0),
        epoch_length=iterations,
        **kwargs,
    )
    return trainer, (d, g)  # optimiser order of the two steps: discriminator first, then generator


TRAINERS = {"semi_supervised": _semi, "cotraining": _cot, "pix2pix": _pix2pix}
STEPS_PER_ITERATION = {"semi_supervised": 1, "cotraining": 1, "pix2pix": 2}


def _record_events(trainer, extra=()) -> list[tuple[int, str]]:
    log: list[tuple[int, str]] = []
    for ev in [*STAGES, *extra]:
        trainer.add_event_handler(ev, lambda e, ev=ev: log.append((e.state.iteration, ev.name)))
    return log


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_event_order_is_forward_loss_backward_model(name):
    trainer, _ = TRAINERS[name](iterations=3)
    log = _record_events(trainer)
    trainer.run()
    expected = [(it, ev) for it in (1, 2, 3) for _ in range(STEPS_PER_ITERATION[name]) for ev in (F, L, B, M)]
    assert log == expected


def test_cotraining_phase_events_sit_between_forward_and_loss():
    trainer, _ = _cot(iterations=2)
    log = _record_events(trainer, extra=list(CoTrainingEvents))
    trainer.run()
    phases = ["SUPERVISED_COMPLETED", "AGREEMENT_COMPLETED", "DIVERSITY_COMPLETED"]
    assert [ev for _, ev in log] == [F, *phases, L, B, M] * 2


def test_pix2pix_step_outputs():
    """Discriminator step: ``loss_d`` optimised, ``pred`` set from its FORWARD; generator step: ``loss`` optimised."""
    trainer, _ = _pix2pix(iterations=1)
    seen: list[tuple[str, list[str]]] = []
    keys = ("pred", "loss_d", "loss", "loss_g_adv", "loss_l1")
    for ev in STAGES:
        trainer.add_event_handler(ev, lambda e, ev=ev: seen.append((ev.name, [k for k in keys if k in e.state.output])))
    trainer.run()
    assert seen == [
        (F, ["pred"]),
        (L, ["pred", "loss_d"]),
        (B, ["pred", "loss_d"]),
        (M, ["pred", "loss_d"]),
        (F, ["pred", "loss_d"]),
        (L, list(keys)),
        (B, list(keys)),
        (M, list(keys)),
    ]
    out = trainer.state.output
    assert not out["loss_g_adv"].requires_grad and not out["loss_l1"].requires_grad
    assert out["loss"].item() == pytest.approx(out["loss_g_adv"].item() + 10.0 * out["loss_l1"].item(), rel=1e-5)


class _ScalerSpy:
    """Count the calls of every ``torch.amp.GradScaler`` instance's scale / step / update."""

    def __init__(self, monkeypatch):
        self.calls: dict[int, list[str]] = {}
        for method in ("scale", "step", "update"):
            original = getattr(torch.amp.GradScaler, method)

            def spy(scaler, *args, _name=method, _original=original, **kwargs):
                self.calls.setdefault(id(scaler), []).append(_name)
                return _original(scaler, *args, **kwargs)

            monkeypatch.setattr(torch.amp.GradScaler, method, spy)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_amp_on_cpu_goes_through_the_grad_scaler(name, monkeypatch):
    """
    ``amp=True`` on CPU: forward passes under bfloat16 autocast, and every step through an ENABLED GradScaler
    (MONAI's own ``torch.cuda.amp.GradScaler`` is disabled off CUDA): scale -> step -> update once per step, and the
    gradients at BACKWARD_COMPLETED are the unscaled ones (read at MODEL_COMPLETED, after ``unscale_``) times the
    loss scale.
    """
    spy = _ScalerSpy(monkeypatch)
    trainer, nets = TRAINERS[name](iterations=2, amp=True)
    step_nets = iter([])
    grads: dict[str, list] = {"scaled": [], "unscaled": [], "scale": []}
    autocast_at_forward: list[bool] = []

    def scalers():
        return [trainer.d_scaler, trainer.scaler] if name == "pix2pix" else [trainer.scaler]

    def on_iteration_started(e):
        nonlocal step_nets
        step_nets = iter(zip(nets, scalers(), strict=True))

    def on_forward(e):
        autocast_at_forward.append(torch.is_autocast_enabled("cpu"))

    def on_backward(e):
        net, scaler = next(step_nets)
        e._spy_net = net
        grads["scaled"].append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]).clone())
        grads["scale"].append(scaler.get_scale())

    def on_model(e):
        net = e._spy_net
        grads["unscaled"].append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))

    trainer.add_event_handler(Events.ITERATION_STARTED, on_iteration_started)
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, on_forward)
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, on_backward)
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, on_model)
    trainer.run()

    n_steps = 2 * STEPS_PER_ITERATION[name]
    assert autocast_at_forward == [True] * n_steps
    used = scalers()
    assert all(isinstance(s, torch.amp.GradScaler) and s.is_enabled() for s in used)
    assert len({id(s) for s in used}) == len(used)  # pix2pix: one scaler per optimiser
    for s in used:
        assert spy.calls[id(s)] == ["scale", "step", "update"] * 2
    assert len(grads["scaled"]) == len(grads["unscaled"]) == n_steps
    for scaled, unscaled, scale in zip(grads["scaled"], grads["unscaled"], grads["scale"], strict=True):
        assert scale == 2.0**16
        assert unscaled.abs().sum() > 0
        torch.testing.assert_close(scaled, unscaled * scale)
    for k, v in trainer.state.output.items():
        if k.startswith("loss"):
            assert torch.isfinite(v).all(), k


def test_amp_loss_falls_on_cpu():
    """bfloat16 autocast + GradScaler still learns: the semi-supervised trainer's supervised loss halves."""
    trainer, _ = _semi(iterations=30, lr=3e-2, amp=True)
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_amp_on_a_device_without_autocast_is_one_clear_error(name):
    with pytest.raises(ValueError, match="amp=True is not supported on device type 'meta'"):
        factory = TRAINERS[name]
        if name == "pix2pix":
            Pix2PixTrainer(
                "meta",
                max_epochs=1,
                train_data_loader=[{}],
                epoch_length=1,
                generator=nn.Identity(),
                discriminator=nn.Identity(),
                g_optimizer=None,
                d_optimizer=None,
                amp=True,
            )
        else:
            trainer, _ = factory(iterations=1)
            type(trainer)(
                device="meta",
                max_epochs=1,
                epoch_length=1,
                train_data_loader=[{}],
                network=trainer.network,
                optimizer=trainer.optimizer,
                amp=True,
                **({} if name == "cotraining" else {"loss_function": trainer.loss_function}),
            )


def test_cotraining_network_positional_or_keyword():
    """The ensemble passed in SupervisedTrainer's 4th place or as ``network=`` gives the same trainer and losses."""

    def build(positional: bool):
        torch.manual_seed(0)
        net = SegmentationEnsemble(_member(), num_models=3)
        streams = {**_cot_streams(2), "_2": _squares(4, 2, 2)}
        common = ("cpu", 1, MultiStreamLoader(streams, 2))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        kw = {"epoch_length": 2, "fgsm": FGSM(eps=0.05), "vat": VAT(xi=1e-3, eps=0.05), "adv_weight": 0.1}
        if positional:
            trainer = CoTrainingTrainer(*common, net, opt, segmentation_cross_entropy, **kw)
        else:
            trainer = CoTrainingTrainer(*common, network=net, optimizer=opt, **kw)
        return trainer, net

    runs = []
    for positional in (True, False):
        torch.manual_seed(1)
        trainer, net = build(positional)
        assert trainer.network is net and trainer.num_models == 3
        assert trainer.prepare_batch.num_models == 3  # the default batch unpacking follows the ensemble's size
        losses: list[dict] = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda e, losses=losses: losses.append({k: e.state.output[k].item() for k in ("loss", "loss_adv")}),
        )
        trainer.run()
        runs.append(losses)
    assert len(runs[0]) == 2 and runs[0] == runs[1]


def test_pix2pix_discriminator_unfrozen_after_a_failing_generator_step():
    class FailingGeneratorLoss(ConditionalGANLoss):
        def generator(self, *args, **kwargs):
            raise RuntimeError("generator loss failed")

    trainer, (d, _) = _pix2pix(iterations=1, loss_function=FailingGeneratorLoss())
    with pytest.raises(RuntimeError, match="generator loss failed"):
        trainer.run()
    assert all(p.requires_grad for p in d.parameters())
