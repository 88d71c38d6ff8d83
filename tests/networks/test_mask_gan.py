"""LatentMaskGenerator + LatentGANLoss on MONAI's GanTrainer: masks are generated, the losses match the formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.engines import GanTrainer
from monai.networks.nets import Discriminator

from monai_wsss.apps import GeneratedMasks
from monai_wsss.engines import PrepareOneHotMasks
from monai_wsss.losses import LatentGANLoss
from monai_wsss.networks import LatentMaskGenerator


def test_generator_outputs_probabilities_and_label_maps():
    g = LatentMaskGenerator(16, (32, 32), num_classes=3, channels=(16, 8))
    p = g(torch.randn(2, 16))
    assert p.shape == (2, 3, 32, 32)
    torch.testing.assert_close(p.sum(1), torch.ones(2, 32, 32))
    labels = g.sample(3, generator=torch.Generator().manual_seed(0))
    assert labels.shape == (3, 1, 32, 32) and set(labels.unique().tolist()) <= {0, 1, 2}
    assert torch.equal(labels, g.sample(3, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="divisible"):
        LatentMaskGenerator(16, (30, 32), 2, channels=(16, 8))


def test_losses_match_the_gan_formula():
    torch.manual_seed(0)
    d = Discriminator(in_shape=(2, 16, 16), channels=(4, 8), strides=(2, 2), num_res_units=0, last_act=None).eval()
    loss = LatentGANLoss(d)  # eval: MONAI's Discriminator has dropout
    fakes, reals = torch.rand(3, 2, 16, 16), torch.rand(3, 2, 16, 16)
    lf, lr = d(fakes), d(reals)
    g_expected = F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf))
    d_expected = 0.5 * (
        F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
        + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
    )
    torch.testing.assert_close(loss.generator_loss(fakes), g_expected)
    torch.testing.assert_close(loss.discriminator_loss(fakes, reals), d_expected)


def test_gan_trainer_runs_and_sampler_draws_reproducibly():
    torch.manual_seed(0)
    masks = torch.zeros(4, 1, 32, 32)
    masks[:, :, 8:20, 8:20] = 1
    data = [{"label": m} for m in masks]
    g = LatentMaskGenerator(8, (32, 32), 2, channels=(16, 8))
    d = Discriminator(in_shape=(2, 32, 32), channels=(4, 8), strides=(2, 2), num_res_units=0, last_act=None)
    loss = LatentGANLoss(d)
    trainer = GanTrainer(
        "cpu",
        max_epochs=1,
        epoch_length=3,
        train_data_loader=torch.utils.data.DataLoader(data, batch_size=2),
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4),
        g_loss_function=loss.generator_loss,
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4),
        d_loss_function=loss.discriminator_loss,
        latent_shape=8,
        d_prepare_batch=PrepareOneHotMasks(2),
    )
    trainer.run()
    assert trainer.state.iteration == 3 and trainer.state.output["g_loss"] > 0
    reals = PrepareOneHotMasks(2)({"label": masks[:2]})
    assert reals.shape == (2, 2, 32, 32) and torch.equal(reals[:, 1:], masks[:2])
    source = GeneratedMasks(g, num_masks=3, seed=5)
    assert len(source) == 3 and torch.equal(source[1]["label"], source[1]["label"])
    assert source[0]["label"].shape == (1, 32, 32)
    with pytest.raises(IndexError):
        source[3]
