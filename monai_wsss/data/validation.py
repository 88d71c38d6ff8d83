"""Checks that run on every file of a datalist before training, so bad input fails early and clearly."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.transforms import LoadImage

__all__ = ["DatasetError", "read_datalist", "validate_case", "validate_datalist"]


class DatasetError(ValueError):
    """A dataset problem; the message names each file and what is wrong with it."""


def read_datalist(dataset_dir: str, datalist: str = "dataset.json") -> tuple[str, dict]:
    """
    ``(path, content)`` of a decathlon-style datalist: ``datalist`` is absolute or relative to ``dataset_dir``.

    Raises:
        DatasetError: the file is missing or is not readable JSON; the message names the file.
    """
    path = datalist if os.path.isabs(datalist) else os.path.join(dataset_dir, datalist)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: datalist file not found (expected a decathlon-style dataset.json).")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable JSON datalist ({e}).") from e
    return path, meta


def _load(path: str, loader: LoadImage) -> tuple[torch.Tensor | None, str | None]:
    if not os.path.exists(path):
        return None, f"{path}: file not found."
    try:
        return loader(path), None
    except Exception as e:  # any reader failure is reported as one line naming the file
        first_line = str(e).partition("\n")[0][:200]  # str(e) may be empty
        return None, f"{path}: cannot be read as an image ({type(e).__name__}: {first_line})."


def validate_case(
    item: dict,
    label_values: Sequence[int] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    affine_atol: float = 1e-3,
    loader: LoadImage | None = None,
    label_transform: Callable | None = None,
) -> list[str]:
    """
    Check one datalist item and return its problems (empty when it is fine).

    Checks: each file exists and is readable by MONAI's ``LoadImage`` (NIfTI, NRRD, MHA, DICOM series, ...);
    the image has no NaN/inf; the label has the image's spatial shape and affine, integer values, and only
    values from ``label_values`` (when given), after ``label_transform`` (e.g. decoding masks stored as grey codes
    0/128/255 into 0/1/2, see :py:class:`monai_wsss.transforms.DecodeLabelCodes`) when given.
    """
    loader = loader or LoadImage(image_only=True, ensure_channel_first=True)
    problems: list[str] = []
    img_path = item.get(image_key)
    if not isinstance(img_path, str):
        return [f"{item}: case has no '{image_key}' path."]
    img, err = _load(img_path, loader)
    if err:
        problems.append(err)
    elif not torch.isfinite(torch.as_tensor(img)).all():
        problems.append(f"{img_path}: image contains NaN or infinite values.")
    lbl_path = item.get(label_key)
    if not lbl_path:
        return problems
    lbl, err = _load(lbl_path, loader)
    if err:
        return problems + [err]
    if label_transform is not None:
        lbl = label_transform(lbl)
    lbl_t = torch.as_tensor(lbl)
    if not torch.isfinite(lbl_t).all() or not torch.equal(lbl_t, torch.round(lbl_t)):
        problems.append(f"{lbl_path}: label has non-integer or non-finite values.")
    elif label_values is not None:
        found = {int(v) for v in torch.unique(lbl_t).tolist()}
        extra = sorted(found - {int(v) for v in label_values})
        if extra:
            problems.append(
                f"{lbl_path}: label values {extra} are not among the declared labels {sorted(label_values)}."
            )
    if img is not None:
        if tuple(img.shape[1:]) != tuple(lbl.shape[1:]):
            problems.append(
                f"{lbl_path}: label shape {tuple(lbl.shape[1:])} differs from image shape {tuple(img.shape[1:])}"
                f" of {img_path}."
            )
        elif not np.allclose(np.asarray(img.affine), np.asarray(lbl.affine), atol=affine_atol):
            problems.append(
                f"{lbl_path}: label affine differs from the affine of {img_path}"
                f" (max difference {np.abs(np.asarray(img.affine) - np.asarray(lbl.affine)).max():.4g})."
            )
    return problems


def validate_datalist(
    items: Sequence[dict],
    label_values: Sequence[int] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    label_transform: Callable | None = None,
) -> None:
    """
    Run :py:func:`validate_case` on every item and raise ONE :py:class:`DatasetError` listing every problem,
    one line per file, instead of a traceback from deep inside a transform during training. ``label_transform`` is
    applied to each label before its values are checked.
    """
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    problems = [
        p
        for item in items
        for p in validate_case(item, label_values, image_key, label_key, loader=loader, label_transform=label_transform)
    ]
    if problems:
        n = len(problems)
        raise DatasetError(f"{n} problem{'s' if n > 1 else ''} in the dataset:\n  " + "\n  ".join(problems))
