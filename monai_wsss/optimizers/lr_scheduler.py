"""Learning-rate schedules."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["ConstantThenLinearDecay", "constant_then_linear_factor"]


def constant_then_linear_factor(epoch: int, constant_epochs: int, decay_epochs: int) -> float:
    """
    Factor on the base learning rate at (0-based) ``epoch``: 1 for the first ``constant_epochs`` epochs, then falling
    by ``1 / (decay_epochs + 1)`` per epoch, so the last of the ``decay_epochs`` epochs trains at
    ``1 / (decay_epochs + 1)`` of the base rate and the rate would reach 0 one epoch later.
    """
    if constant_epochs < 0 or decay_epochs < 0:
        raise ValueError(f"constant_epochs and decay_epochs must be >= 0, got {constant_epochs}, {decay_epochs}.")
    return max(0.0, 1.0 - max(0, epoch + 1 - constant_epochs) / float(decay_epochs + 1))


class ConstantThenLinearDecay(LambdaLR):
    """
    The pix2pix schedule (Isola et al., CVPR 2017, Sec. 3.3 and their training details): the base learning rate for
    ``constant_epochs`` epochs, then a linear decay towards zero over ``decay_epochs`` epochs (see
    :py:func:`constant_then_linear_factor`). Step it once per epoch (MONAI ``LrScheduleHandler(epoch_level=True)``).
    """

    def __init__(self, optimizer: Optimizer, constant_epochs: int, decay_epochs: int, last_epoch: int = -1) -> None:
        self.constant_epochs = int(constant_epochs)
        self.decay_epochs = int(decay_epochs)
        super().__init__(optimizer, self._factor, last_epoch=last_epoch)

    def _factor(self, epoch: int) -> float:
        return constant_then_linear_factor(epoch, self.constant_epochs, self.decay_epochs)
