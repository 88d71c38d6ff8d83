"""What a dataset folder holds, so configs adapt to it (classes, image channels) from one ``--dataset_dir``."""

from __future__ import annotations

import os

from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage

from .validation import DatasetError, read_datalist

__all__ = ["describe_dataset"]


def describe_dataset(dataset_dir: str, datalist: str = "dataset.json", key: str = "training") -> dict:
    """
    Read ``dataset_dir/datalist`` (decathlon style) and the first image of list ``key``, and return:

    - ``labels``: the ``labels`` field (``{"0": "background", ...}``);
    - ``num_classes``: its number of entries (background included);
    - ``image_channels``: channels of the first image (3 for an RGB PNG);
    - ``spatial_dims``: 2 or 3, from that image;
    - ``num_training`` / ``num_test``: lengths of the ``training`` and ``test`` lists.

    Raises:
        DatasetError: no datalist, no ``labels`` field, or an empty or unreadable ``key`` list; the message names
            the file.
    """
    path, meta = read_datalist(dataset_dir, datalist)
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{path}: has no 'labels' field (e.g. {{\"0\": \"background\", \"1\": \"nucleus\"}}).")
    if not meta.get(key):
        raise DatasetError(f"{path}: has no non-empty '{key}' list.")
    first = load_decathlon_datalist(path, True, key, base_dir=os.path.dirname(os.path.abspath(path)))[0]["image"]
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(first)
    except Exception as e:  # any reader failure is reported as one line naming the file
        raise DatasetError(f"{first}: cannot be read as an image ({type(e).__name__}).") from e
    return {
        "labels": {str(k): v for k, v in labels.items()},
        "num_classes": len(labels),
        "image_channels": int(image.shape[0]),
        "spatial_dims": int(image.ndim - 1),
        "num_training": len(meta.get("training") or []),
        "num_test": len(meta.get("test") or []),
    }
