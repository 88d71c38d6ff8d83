"""describe_dataset reads classes and image channels so one --dataset_dir override adapts a bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_wsss.data import DatasetError, describe_dataset
from monai_wsss.utils import atomic_write_image


def _folder(tmp_path, channels: int, labels: dict | None, training: bool = True):
    atomic_write_image(str(tmp_path / "img.png"), np.zeros((channels, 12, 10), np.uint8))
    atomic_write_image(str(tmp_path / "msk.png"), np.zeros((1, 12, 10), np.uint8))
    meta = {"training": [{"image": "img.png", "label": "msk.png"}] if training else [], "test": []}
    if labels is not None:
        meta["labels"] = labels
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    return str(tmp_path)


def test_rgb_three_classes(tmp_path):
    info = describe_dataset(_folder(tmp_path, 3, {"0": "bg", "1": "cytoplasm", "2": "nucleus"}))
    assert info["num_classes"] == 3 and info["image_channels"] == 3 and info["spatial_dims"] == 2
    assert info["num_training"] == 1 and info["num_test"] == 0
    assert info["labels"]["2"] == "nucleus"


def test_grey_binary(tmp_path):
    info = describe_dataset(_folder(tmp_path, 1, {"0": "bg", "1": "nucleus"}))
    assert info["num_classes"] == 2 and info["image_channels"] == 1


def test_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="datalist file not found"):
        describe_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="no 'labels' field"):
        describe_dataset(_folder(tmp_path, 1, None))
    with pytest.raises(DatasetError, match="no non-empty 'training'"):
        describe_dataset(_folder(tmp_path, 1, {"0": "bg", "1": "x"}, training=False))
