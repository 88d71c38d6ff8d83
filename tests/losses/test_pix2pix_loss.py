"""ConditionalGANLoss against the pix2pix formula computed by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_wsss.losses import ConditionalGANLoss


def test_generator_loss_is_adversarial_plus_lambda_l1():
    torch.manual_seed(0)
    d_fake = torch.randn(2, 1, 6, 6)
    fake, real = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    loss = ConditionalGANLoss(criterion="bce", lambda_l1=100.0)
    total, adv, l1 = loss.generator(d_fake, fake, real)
    expected_adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    expected_l1 = (fake - real).abs().mean()
    assert torch.allclose(adv, expected_adv, atol=1e-6)
    assert torch.allclose(l1, expected_l1)
    assert torch.allclose(total, expected_adv + 100.0 * expected_l1, atol=1e-5)
    assert torch.allclose(loss(d_fake, fake, real), total)


def test_discriminator_loss_is_halved():
    torch.manual_seed(1)
    d_real, d_fake = torch.randn(2, 1, 6, 6), torch.randn(2, 1, 6, 6)
    loss = ConditionalGANLoss(criterion="bce")
    expected = 0.5 * (
        F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
        + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    )
    assert torch.allclose(loss.discriminator(d_real, d_fake), expected, atol=1e-6)
    unhalved = ConditionalGANLoss(criterion="bce", discriminator_factor=1.0)
    assert torch.allclose(unhalved.discriminator(d_real, d_fake), 2 * expected, atol=1e-6)


def test_least_squares_on_raw_logits():
    d_real, d_fake = torch.tensor([[[[0.5, 2.0]]]]), torch.tensor([[[[0.0, -1.0]]]])
    loss = ConditionalGANLoss(criterion="least_squares")
    # 0.5 * (mean((d_real - 1)^2) + mean(d_fake^2)) = 0.5 * ((0.25 + 1) / 2 + (0 + 1) / 2)
    assert loss.discriminator(d_real, d_fake).item() == pytest.approx(0.5625)


def test_patch_discriminator_feature_lists_use_the_last_output():
    logits = torch.randn(1, 1, 3, 3)
    features = [torch.randn(1, 4, 6, 6), logits]  # PatchDiscriminator returns features with the logits last
    loss = ConditionalGANLoss()
    assert torch.allclose(loss.discriminator(features, features), loss.discriminator(logits, logits))
