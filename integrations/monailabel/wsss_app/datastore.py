"""A MONAI Label datastore's images as the decathlon folder the monai_wsss bundles read (``--dataset_dir``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from monai_wsss.utils import atomic_write_json

__all__ = ["write_dataset_folder"]


def write_dataset_folder(
    out_dir: str, labeled: Sequence[Mapping], unlabeled: Sequence[str], labels: Mapping[str, str], test: int = 0
) -> str:
    """Write ``<out_dir>/dataset.json`` over a datastore's files (absolute paths, nothing copied): the labelled
    images as ``training`` (their last ``test`` ones as ``test``, the held-out list the active-learning loop scores
    its curve on) and the other images as ``unlabeled``, the second stream of the semi-supervised bundles, which
    MONAI Label's own bundle trainer never passes.

    Args:
        out_dir: folder of the ``dataset.json`` (created).
        labeled: ``{"image": path, "label": path}`` items.
        unlabeled: image paths without a label.
        labels: class names by index, e.g. ``{"0": "background", "1": "brain"}``.
        test: how many labelled images to hold out as ``test``.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: no labelled image, a labelled item without ``image`` / ``label``, a missing file, or ``test`` not
            leaving one labelled image for training.
    """
    items = []
    for d in labeled:
        if not d.get("image") or not d.get("label"):
            raise ValueError(f"labelled item {dict(d)} needs both `image` and `label`.")
        items.append({"image": os.path.abspath(d["image"]), "label": os.path.abspath(d["label"])})
    if not items:
        raise ValueError("the datastore holds no labelled image: save a label first (PUT /datastore/label).")
    if not 0 <= test < len(items):
        raise ValueError(f"`test` = {test} must leave at least one of the {len(items)} labelled images for training.")
    images = [os.path.abspath(p) for p in unlabeled]
    for path in [p for d in items for p in d.values()] + images:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: listed by the datastore but missing.")
    split = len(items) - test
    meta = {
        "name": "monailabel-datastore",
        "labels": {str(k): str(v) for k, v in labels.items()},
        "training": items[:split],
        "unlabeled": [{"image": p} for p in images],
    }
    if test:
        meta["test"] = items[split:]
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(os.path.join(out_dir, "dataset.json"), meta)
    return out_dir
