"""Transforms: array versions and their dictionary twins."""

from .array import EnsembleDisagreement, OtsuForeground, SignedDistanceMap
from .dictionary import (
    EnsembleDisagreementD,
    EnsembleDisagreementd,
    EnsembleDisagreementDict,
    OtsuForegroundD,
    OtsuForegroundd,
    OtsuForegroundDict,
    SignedDistanceMapD,
    SignedDistanceMapd,
    SignedDistanceMapDict,
)

__all__ = [
    "EnsembleDisagreement",
    "EnsembleDisagreementd",
    "EnsembleDisagreementD",
    "EnsembleDisagreementDict",
    "OtsuForeground",
    "OtsuForegroundd",
    "OtsuForegroundD",
    "OtsuForegroundDict",
    "SignedDistanceMap",
    "SignedDistanceMapd",
    "SignedDistanceMapD",
    "SignedDistanceMapDict",
]
