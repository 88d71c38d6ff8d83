"""Learning-rate schedules that MONAI's ``monai.optimizers`` does not have."""

from .lr_scheduler import ConstantThenLinearDecay, constant_then_linear_factor

__all__ = ["ConstantThenLinearDecay", "constant_then_linear_factor"]
