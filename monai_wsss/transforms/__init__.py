"""Transforms: array versions and their dictionary twins."""

from .array import OtsuForeground, SignedDistanceMap
from .dictionary import (
    OtsuForegroundD,
    OtsuForegroundd,
    OtsuForegroundDict,
    SignedDistanceMapD,
    SignedDistanceMapd,
    SignedDistanceMapDict,
)

__all__ = [
    "OtsuForeground",
    "OtsuForegroundd",
    "OtsuForegroundD",
    "OtsuForegroundDict",
    "SignedDistanceMap",
    "SignedDistanceMapd",
    "SignedDistanceMapD",
    "SignedDistanceMapDict",
]
