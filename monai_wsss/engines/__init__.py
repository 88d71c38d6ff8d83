"""Engines built on MONAI's workflows.

Every trainer runs its optimisation through ONE step, :py:func:`monai_wsss.engines.step.optimization_step`, and
follows ONE loss contract (a loss called with named tensors returns a scalar or a dict of terms whose ``"loss"``
entry is optimised and whose other entries are logged): both are documented in :py:mod:`monai_wsss.engines.step`.
"""

from .cotraining import CoTrainingEvents, CoTrainingTrainer, PrepareEnsembleBatch
from .pix2pix import Pix2PixTrainer, PrepareMaskImageBatch, PrepareOneHotMasks
from .semi_supervised import UNLABELED_IMAGE, PrepareLabeledUnlabeledBatch, SemiSupervisedTrainer
from .step import GradScalerMixin, amp_device_type, autocast, loss_terms, make_grad_scaler, optimization_step

__all__ = [
    "CoTrainingEvents",
    "CoTrainingTrainer",
    "GradScalerMixin",
    "PrepareEnsembleBatch",
    "Pix2PixTrainer",
    "PrepareLabeledUnlabeledBatch",
    "PrepareMaskImageBatch",
    "PrepareOneHotMasks",
    "SemiSupervisedTrainer",
    "UNLABELED_IMAGE",
    "amp_device_type",
    "autocast",
    "loss_terms",
    "make_grad_scaler",
    "optimization_step",
]
