"""Transforms: array versions and their dictionary twins."""

from .array import DecodeLabelCodes, EnsembleDisagreement, OtsuForeground, QuantizeLabels, SignedDistanceMap
from .dictionary import (
    DecodeLabelCodesD,
    DecodeLabelCodesd,
    DecodeLabelCodesDict,
    EnsembleDisagreementD,
    EnsembleDisagreementd,
    EnsembleDisagreementDict,
    OtsuForegroundD,
    OtsuForegroundd,
    OtsuForegroundDict,
    QuantizeLabelsD,
    QuantizeLabelsd,
    QuantizeLabelsDict,
    SignedDistanceMapD,
    SignedDistanceMapd,
    SignedDistanceMapDict,
)

__all__ = [
    "DecodeLabelCodes",
    "DecodeLabelCodesd",
    "DecodeLabelCodesD",
    "DecodeLabelCodesDict",
    "EnsembleDisagreement",
    "EnsembleDisagreementd",
    "EnsembleDisagreementD",
    "EnsembleDisagreementDict",
    "OtsuForeground",
    "OtsuForegroundd",
    "OtsuForegroundD",
    "OtsuForegroundDict",
    "QuantizeLabels",
    "QuantizeLabelsd",
    "QuantizeLabelsD",
    "QuantizeLabelsDict",
    "SignedDistanceMap",
    "SignedDistanceMapd",
    "SignedDistanceMapD",
    "SignedDistanceMapDict",
]
