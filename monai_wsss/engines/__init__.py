"""Engines built on MONAI's workflows."""

from .semi_supervised import UNLABELED_IMAGE, PrepareLabeledUnlabeledBatch, SemiSupervisedTrainer

__all__ = ["PrepareLabeledUnlabeledBatch", "SemiSupervisedTrainer", "UNLABELED_IMAGE"]
