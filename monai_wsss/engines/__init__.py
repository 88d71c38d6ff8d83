"""Engines built on MONAI's workflows."""

from .cotraining import CoTrainingEvents, CoTrainingTrainer, PrepareEnsembleBatch
from .pix2pix import Pix2PixTrainer, PrepareMaskImageBatch, PrepareOneHotMasks
from .semi_supervised import UNLABELED_IMAGE, PrepareLabeledUnlabeledBatch, SemiSupervisedTrainer

__all__ = [
    "CoTrainingEvents",
    "CoTrainingTrainer",
    "PrepareEnsembleBatch",
    "Pix2PixTrainer",
    "PrepareLabeledUnlabeledBatch",
    "PrepareMaskImageBatch",
    "PrepareOneHotMasks",
    "SemiSupervisedTrainer",
    "UNLABELED_IMAGE",
]
