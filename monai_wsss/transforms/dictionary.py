"""Dictionary-based wrappers of :py:mod:`monai_wsss.transforms.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform
from monai.transforms.post.dictionary import Ensembled

from monai_wsss.transforms.array import (
    DecodeLabelCodes,
    EnsembleDisagreement,
    OtsuForeground,
    QuantizeLabels,
    SignedDistanceMap,
)

__all__ = [
    "EnsembleDisagreementd",
    "EnsembleDisagreementD",
    "EnsembleDisagreementDict",
    "SignedDistanceMapd",
    "SignedDistanceMapD",
    "SignedDistanceMapDict",
    "OtsuForegroundd",
    "OtsuForegroundD",
    "OtsuForegroundDict",
    "DecodeLabelCodesd",
    "DecodeLabelCodesD",
    "DecodeLabelCodesDict",
    "QuantizeLabelsd",
    "QuantizeLabelsD",
    "QuantizeLabelsDict",
]


class SignedDistanceMapd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.SignedDistanceMap`: writes the map of ``key`` to
    ``f"{key}_{postfix}"`` and keeps the mask.

    Args:
        keys: keys of the masks.
        sampling: voxel spacing for the distance transform; ``None`` means unit spacing.
        postfix: suffix of the output key (``label`` -> ``label_sdf``).
        allow_missing_keys: skip missing keys (e.g. unlabelled samples sharing the labelled pipeline).
    """

    backend = SignedDistanceMap.backend

    def __init__(
        self,
        keys: KeysCollection,
        sampling: float | Sequence[float] | None = None,
        postfix: str = "sdf",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = SignedDistanceMap(sampling=sampling)
        self.postfix = postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.postfix}"] = self.converter(d[key])
        return d


class OtsuForegroundd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.OtsuForeground`.

    Args:
        keys: keys of the images.
        output_key: where to write the mask; ``None`` overwrites the input key. Only valid with one key.
        allow_missing_keys: skip missing keys.
    """

    backend = OtsuForeground.backend

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(f"`output_key` needs exactly one key, got keys={self.keys}.")
        self.converter = OtsuForeground()
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or key] = self.converter(d[key])
        return d


class EnsembleDisagreementd(Ensembled):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.EnsembleDisagreement`: the members' probability
    maps under ``keys`` (or one stacked key) give the uncertainty map under ``output_key``.
    """

    backend = EnsembleDisagreement.backend

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, EnsembleDisagreement(), output_key, allow_missing_keys)


class QuantizeLabelsd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.QuantizeLabels`: replaces each intensity-coded
    label under ``keys`` by its class indices.

    Args:
        keys: keys of the label images.
        thresholds: strictly increasing class boundaries; a value becomes the number of thresholds ``<=`` it.
        dtype: dtype of the output, numpy or torch. Defaults to ``np.uint8``.
        allow_missing_keys: skip missing keys (e.g. unlabelled samples sharing the labelled pipeline).
    """

    backend = QuantizeLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        thresholds: Sequence[float],
        dtype: DtypeLike | torch.dtype = np.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = QuantizeLabels(thresholds=thresholds, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class DecodeLabelCodesd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_wsss.transforms.DecodeLabelCodes`: label maps pass unchanged,
    grey-coded masks (0/255, 0/128/255, ...) become class indices.

    Args:
        keys: keys of the label images.
        num_classes: classes, background included.
        max_code: grey code of the last class.
        dtype: output dtype.
        allow_missing_keys: skip missing keys.
    """

    backend = DecodeLabelCodes.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        max_code: float = 255,
        dtype: DtypeLike | torch.dtype = np.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = DecodeLabelCodes(num_classes=num_classes, max_code=max_code, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


SignedDistanceMapD = SignedDistanceMapDict = SignedDistanceMapd
OtsuForegroundD = OtsuForegroundDict = OtsuForegroundd
EnsembleDisagreementD = EnsembleDisagreementDict = EnsembleDisagreementd
QuantizeLabelsD = QuantizeLabelsDict = QuantizeLabelsd
DecodeLabelCodesD = DecodeLabelCodesDict = DecodeLabelCodesd
