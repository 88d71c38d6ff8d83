"""GAN losses for MONAI's ``GanTrainer`` on masks (generator and discriminator losses as callables)."""

from __future__ import annotations

import torch
from monai.losses import PatchAdversarialLoss
from torch import nn

__all__ = ["LatentGANLoss"]


class LatentGANLoss:
    """
    The GAN objective of Goodfellow et al. (NeurIPS 2014, Eq. 1; non-saturating generator loss) in the two callables
    MONAI's :py:class:`~monai.engines.GanTrainer` expects: :py:meth:`generator_loss` ``(fakes)`` and
    :py:meth:`discriminator_loss` ``(fakes, reals)`` (halved, as for pix2pix). ``discriminator`` returns logits (e.g.
    MONAI ``Discriminator(..., last_act=None)``).

    Args:
        discriminator: the discriminator network.
        criterion: ``"bce"``, ``"least_squares"`` or ``"hinge"`` (MONAI ``PatchAdversarialLoss``).
    """

    def __init__(self, discriminator: nn.Module, criterion: str = "bce") -> None:
        self.discriminator = discriminator
        self.adversarial = PatchAdversarialLoss(criterion=criterion, reduction="mean", no_activation_leastsq=True)

    def generator_loss(self, fakes: torch.Tensor) -> torch.Tensor:
        return self.adversarial(self.discriminator(fakes), target_is_real=True, for_discriminator=False)

    def discriminator_loss(self, fakes: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
        real = self.adversarial(self.discriminator(reals), target_is_real=True, for_discriminator=True)
        fake = self.adversarial(self.discriminator(fakes.detach()), target_is_real=False, for_discriminator=True)
        return 0.5 * (real + fake)
