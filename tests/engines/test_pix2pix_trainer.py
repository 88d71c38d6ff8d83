"""Pix2PixTrainer: the conditional GAN step on MONAI's engine learns a mask -> image mapping."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.networks.nets import PatchDiscriminator

from monai_wsss.data import MultiStreamLoader
from monai_wsss.engines import Pix2PixTrainer
from monai_wsss.losses import ConditionalGANLoss
from monai_wsss.networks import MaskToImageGenerator


def _pairs(n: int = 4, size: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        mask = torch.zeros(1, size, size)
        for _ in range(3):
            y, x = torch.randint(4, size - 8, (2,), generator=g).tolist()
            mask[:, y : y + 6, x : x + 6] = 1
        image = 0.8 * mask - 0.4 + 0.05 * torch.randn(1, size, size, generator=g)  # bright blobs, dark background
        items.append({"label": mask, "image": image})
    return items


def _trainer(iterations: int, d_lr: float = 2e-4, lambda_l1: float = 100.0):
    torch.manual_seed(0)
    g = MaskToImageGenerator(2, num_classes=2, out_channels=1, channels=(8, 16, 16), strides=(2, 2), dropout=0.0)
    d = PatchDiscriminator(2, num_layers_d=2, channels=8, in_channels=3)
    go = torch.optim.Adam(g.parameters(), 1e-3, betas=(0.5, 0.999))
    do = torch.optim.Adam(d.parameters(), d_lr, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(_pairs(), batch_size=2, shuffle=True)
    trainer = Pix2PixTrainer(
        "cpu",
        max_epochs=1,
        train_data_loader=MultiStreamLoader({"": loader}, epoch_length=iterations),
        generator=g,
        discriminator=d,
        g_optimizer=go,
        d_optimizer=do,
        loss_function=ConditionalGANLoss(lambda_l1=lambda_l1),
        epoch_length=iterations,
    )
    return trainer, g, d


def test_l1_falls_and_outputs_are_recorded():
    trainer, g, d = _trainer(40)
    l1 = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: l1.append(e.state.output["loss_l1"]))
    trainer.run()
    out = trainer.state.output
    assert {"loss", "loss_g_adv", "loss_l1", "loss_d"} <= set(out)
    assert out["label"].shape == (2, 2, 32, 32)  # the one-hot mask the discriminator saw
    assert out["pred"].shape == out["image"].shape == (2, 1, 32, 32)
    # the loss terms are scalar tensors (no .item() host sync per iteration); handlers convert them when they log
    assert all(isinstance(out[k], torch.Tensor) and out[k].numel() == 1 for k in ("loss", "loss_g_adv", "loss_l1"))
    assert out["loss"].item() == pytest.approx(out["loss_g_adv"].item() + 100.0 * out["loss_l1"].item(), rel=1e-5)
    assert sum(l1[-5:]) / 5 < 0.5 * sum(l1[:5]) / 5
    assert all(p.requires_grad for p in d.parameters())  # frozen only during the generator step


def test_generator_step_does_not_update_the_discriminator():
    trainer, g, d = _trainer(3, d_lr=0.0)
    before = [p.detach().clone() for p in d.parameters()]
    g_before = [p.detach().clone() for p in g.parameters()]
    trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(before, d.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, g.parameters(), strict=True))
