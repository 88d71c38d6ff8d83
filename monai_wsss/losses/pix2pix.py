"""The pix2pix objective (Isola et al., CVPR 2017), as used for smear synthesis by Bailo, Ham, Shin (CVPRW 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import PatchAdversarialLoss
from torch.nn.modules.loss import _Loss

from ..networks.nets.pix2pix import discriminator_logits

__all__ = ["ConditionalGANLoss"]


class ConditionalGANLoss(_Loss):
    """
    The conditional GAN objective of pix2pix, Isola et al., CVPR 2017, Eq. 4:
    ``G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G)`` with ``L_cGAN`` (Eq. 1) judged by a discriminator on
    ``concat(mask, image)`` and ``L_L1 = E ||y - G(x)||_1`` (Eq. 3), lambda = 100.

    - :py:meth:`generator`: ``adv(D(x, G(x)) -> real) + lambda_l1 * mean|y - G(x)|``;
    - :py:meth:`discriminator`: ``0.5 * (adv(D(x, y) -> real) + adv(D(x, G(x)) -> fake))``, halved "to slow down the
      rate at which D learns relative to G" (Isola et al., Sec. 3.3).

    The adversarial terms are MONAI's :py:class:`~monai.losses.PatchAdversarialLoss` (``"bce"``: the vanilla GAN of
    pix2pix; ``"least_squares"``: LSGAN; ``"hinge"``), which accepts single- and multi-scale discriminator outputs.

    Args:
        criterion: ``"bce"``, ``"least_squares"`` or ``"hinge"``.
        lambda_l1: weight of the L1 term (100 in pix2pix).
        discriminator_factor: factor on the discriminator loss (0.5 in pix2pix).
    """

    def __init__(self, criterion: str = "bce", lambda_l1: float = 100.0, discriminator_factor: float = 0.5) -> None:
        super().__init__()
        self.adversarial = PatchAdversarialLoss(criterion=criterion, reduction="mean", no_activation_leastsq=True)
        self.lambda_l1 = float(lambda_l1)
        self.discriminator_factor = float(discriminator_factor)

    def generator(
        self, d_fake: torch.Tensor | Sequence, fake: torch.Tensor, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(total, adversarial, l1)`` for the generator; ``d_fake`` is D's output on ``(mask, fake)``."""
        adv = self.adversarial(discriminator_logits(d_fake), target_is_real=True, for_discriminator=False)
        l1 = torch.mean(torch.abs(fake - real))
        return adv + self.lambda_l1 * l1, adv, l1

    def discriminator(self, d_real: torch.Tensor | Sequence, d_fake: torch.Tensor | Sequence) -> torch.Tensor:
        """Return the discriminator loss; ``d_fake`` must come from a detached fake."""
        real = self.adversarial(discriminator_logits(d_real), target_is_real=True, for_discriminator=True)
        fake = self.adversarial(discriminator_logits(d_fake), target_is_real=False, for_discriminator=True)
        return self.discriminator_factor * (real + fake)

    def forward(self, d_fake: torch.Tensor | Sequence, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.generator(d_fake, fake, real)[0]
