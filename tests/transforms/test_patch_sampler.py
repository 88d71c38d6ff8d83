"""RandMajorityClassPatches(d): patch count and size as configured, labels = majority class, bounded background."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_wsss.transforms import RandMajorityClassPatches, RandMajorityClassPatchesd, majority_class


def test_majority_class_hand_values():
    assert majority_class(torch.tensor([[0, 1, 1, 2]])) == 1
    assert majority_class(np.array([[2, 2, 0, 0]])) == 0  # tie: the smallest class
    with pytest.raises(ValueError, match="negative"):
        majority_class(torch.tensor([-1, 0]))


@pytest.mark.parametrize("shape, roi", [((40, 48), (16, 16)), ((24, 28, 20), (8, 8, 8))])
def test_count_size_and_majority_labels(shape, roi):
    # left half class 1, a corner block class 2; the image holds the label so a patch reveals its box
    label = torch.zeros(1, *shape)
    label[(0, slice(0, shape[0] // 2))] = 1
    label[(0, *[slice(0, 6)] * len(shape))] = 2
    # max_background_fraction=1: one box per patch (no redraw), so box i is patch i's
    sampler = RandMajorityClassPatches(
        num_patches=12, min_size=4, max_size=20, roi_size=roi[0], max_background_fraction=1.0, mode="nearest"
    )
    sampler.set_random_state(3)
    boxes = []
    real_box = sampler._box
    sampler._box = lambda s, c: boxes.append(real_box(s, c)) or boxes[-1]
    patches, classes = sampler(torch.rand(1, *shape), label)
    assert patches.shape == (12, 1, *roi) and classes.shape == (12,) and classes.dtype == torch.long
    assert len(boxes) == 12
    assert classes.tolist() == [majority_class(label[(slice(None), *b)]) for b in boxes]
    sides = {b_.stop - b_.start for b in boxes for b_ in b}
    assert min(sides) >= 4 and max(sides) <= 20 and len(sides) > 3  # random sides within the range
    assert all(len({b_.stop - b_.start for b_ in b if b_.stop - b_.start < min(shape)}) <= 1 for b in boxes)


def test_label_is_exact_majority_of_the_patch():
    # image == label, so each (nearest-resized, integer-ratio) patch carries its own voxels: its majority must match
    label = torch.zeros(1, 32, 32)
    label[0, :, 16:] = 1
    label[0, 20:, :10] = 2
    sampler = RandMajorityClassPatches(num_patches=30, min_size=8, max_size=8, roi_size=8, max_background_fraction=0.3)
    sampler.set_random_state(0)
    patches, classes = sampler(label.clone(), label)
    for p, c in zip(patches, classes, strict=True):
        assert majority_class(p) == int(c)
    assert set(classes.tolist()) == {0, 1, 2}


def test_background_share_is_bounded():
    label = torch.zeros(1, 64, 64)
    label[0, 30:34, 30:34] = 1  # a tiny object: random patches would be background almost always
    sampler = RandMajorityClassPatches(num_patches=10, min_size=4, max_size=6, roi_size=4, max_background_fraction=0.2)
    sampler.set_random_state(1)
    _, classes = sampler(torch.rand(1, 64, 64), label)
    assert int((classes == 0).sum()) <= 2 and int((classes == 1).sum()) >= 8


def test_dict_twin_lists_patches_with_class_and_same_box():
    img = torch.arange(20 * 20, dtype=torch.float32).reshape(1, 20, 20)
    label = (img > 200).float()
    t = RandMajorityClassPatchesd(["image", "copy"], num_patches=5, min_size=4, max_size=10, roi_size=6)
    t.set_random_state(2)
    out = t({"image": img, "copy": img.clone(), "label": label, "name": "a"})
    assert len(out) == 5
    for item in out:
        assert item["image"].shape == (1, 6, 6) and torch.equal(item["image"], item["copy"])
        assert item["label"].shape == (1,) and item["name"] == "a"


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="min_size"):
        RandMajorityClassPatches(min_size=10, max_size=5)
    with pytest.raises(ValueError, match="max_background_fraction"):
        RandMajorityClassPatches(max_background_fraction=1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        RandMajorityClassPatches(min_size=2, max_size=4, roi_size=2)(torch.rand(1, 8, 8), torch.zeros(1, 8, 9))
