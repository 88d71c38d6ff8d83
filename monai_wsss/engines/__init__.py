"""Engines built on MONAI's workflows."""

from .cotraining import CoTrainingEvents, CoTrainingTrainer, PrepareEnsembleBatch
from .semi_supervised import UNLABELED_IMAGE, PrepareLabeledUnlabeledBatch, SemiSupervisedTrainer

__all__ = [
    "CoTrainingEvents",
    "CoTrainingTrainer",
    "PrepareEnsembleBatch",
    "PrepareLabeledUnlabeledBatch",
    "SemiSupervisedTrainer",
    "UNLABELED_IMAGE",
]
