"""PairSynthesizer writes pairs and a datalist that the data layer accepts; write_image round-trips."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from monai.transforms import LoadImage

from monai_wsss.apps import PairSynthesizer
from monai_wsss.data import load_semisupervised_datalist
from monai_wsss.networks import MaskToImageGenerator
from monai_wsss.utils import atomic_write_image

LABELS = {"0": "background", "1": "cytoplasm", "2": "nucleus"}


@pytest.mark.parametrize("shape,ext", [((3, 20, 30), ".png"), ((1, 20, 30), ".png"), ((1, 6, 7, 5), ".nii.gz")])
def test_write_image_round_trips_through_monai_loader(tmp_path, shape, ext):
    a = np.random.RandomState(0).randint(0, 255, shape).astype(np.uint8)
    path = str(tmp_path / f"x{ext}")
    atomic_write_image(path, a)
    back = LoadImage(image_only=True, ensure_channel_first=True)(path)
    assert tuple(back.shape) == shape
    np.testing.assert_array_equal(np.asarray(back), a)


def _generator():
    torch.manual_seed(0)
    return MaskToImageGenerator(2, num_classes=3, out_channels=3, channels=(4, 8, 8), strides=(2, 2))


def _masks(n=3):
    g = torch.Generator().manual_seed(0)
    return [{"label": torch.randint(0, 3, (1, 32, 32), generator=g).float()} for _ in range(n)]


def test_synthesised_dataset_is_valid_and_trains_a_bundle_datalist(tmp_path):
    real = [{"image": str(tmp_path / "real.png"), "label": str(tmp_path / "real_mask.png")}]
    atomic_write_image(real[0]["image"], np.zeros((3, 32, 32), np.uint8))
    atomic_write_image(real[0]["label"], np.ones((1, 32, 32), np.uint8))
    test = [{"image": str(tmp_path / "test.png"), "label": str(tmp_path / "test_mask.png")}]  # a case in training
    atomic_write_image(test[0]["image"], np.zeros((3, 32, 32), np.uint8))  # and test is refused by the data layer
    atomic_write_image(test[0]["label"], np.ones((1, 32, 32), np.uint8))
    out = PairSynthesizer(
        _generator(),
        _masks(),
        num_pairs=5,
        output_dir=str(tmp_path / "syn"),
        label_names=LABELS,
        batch_size=2,
        real_items=real,
        test_items=test,
        grid_path=str(tmp_path / "grid.png"),
    ).run()
    meta = json.load(open(os.path.join(out, "dataset.json")))
    assert meta["numSynthetic"] == 5 and meta["numTraining"] == 6 and meta["numTest"] == 1
    assert meta["training"][-1]["image"] == real[0]["image"]
    assert os.path.getsize(tmp_path / "grid.png") > 0
    # the data layer reads it back: every file validated against the declared labels
    lists = load_semisupervised_datalist(out, fully_labeled_fraction=None, val_fraction=0.0)
    assert len(lists["labeled"]) == 6 and len(lists["test"]) == 1
    first = LoadImage(image_only=True, ensure_channel_first=True)(os.path.join(out, meta["training"][0]["label"]))
    np.testing.assert_array_equal(np.asarray(first), _masks()[0]["label"].numpy())  # masks are cycled in order
    image = LoadImage(image_only=True, ensure_channel_first=True)(os.path.join(out, meta["training"][0]["image"]))
    assert image.shape == (3, 32, 32)


def test_rerun_replaces_the_folder_and_leaves_no_temporaries(tmp_path):
    kw = {"masks": _masks(), "output_dir": str(tmp_path / "syn"), "label_names": LABELS}
    PairSynthesizer(_generator(), num_pairs=4, **kw).run()
    PairSynthesizer(_generator(), num_pairs=2, **kw).run()
    assert sorted(os.listdir(tmp_path / "syn" / "images")) == ["synthetic_00000.png", "synthetic_00001.png"]
    assert os.listdir(tmp_path) == ["syn"]


def test_dropout_sampling_gives_different_images_for_the_same_mask(tmp_path):
    masks = _masks(1)
    out = PairSynthesizer(_generator(), masks, 2, str(tmp_path / "a"), LABELS, keep_dropout=True, batch_size=1).run()
    load = LoadImage(image_only=True, ensure_channel_first=True)
    a, b = (np.asarray(load(os.path.join(out, "images", f"synthetic_0000{i}.png"))) for i in (0, 1))
    assert not np.array_equal(a, b)
    out = PairSynthesizer(_generator(), masks, 2, str(tmp_path / "b"), LABELS, keep_dropout=False, batch_size=1).run()
    a, b = (np.asarray(load(os.path.join(out, "images", f"synthetic_0000{i}.png"))) for i in (0, 1))
    np.testing.assert_array_equal(a, b)


def test_masks_outside_the_declared_labels_are_rejected(tmp_path):
    bad = [{"label": torch.full((1, 16, 16), 2.0)}]
    g = MaskToImageGenerator(2, num_classes=3, out_channels=1, channels=(4, 8), strides=(2,))
    with pytest.raises(Exception, match=r"label values \[2\] are not among the declared labels"):
        PairSynthesizer(g, bad, 1, str(tmp_path / "syn"), {"0": "background", "1": "nucleus"}).run()
    assert not os.path.exists(tmp_path / "syn") and os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="empty"):
        PairSynthesizer(g, [], 1, str(tmp_path / "syn"), LABELS)
