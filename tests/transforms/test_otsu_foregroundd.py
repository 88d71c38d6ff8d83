from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_wsss.transforms import OtsuForegroundD, OtsuForegroundd, OtsuForegroundDict


def _bimodal():
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 12, 10), bool)
    mask[0, 3:9, 2:7] = True
    img = np.where(mask, rng.integers(6, 9, mask.shape), rng.integers(0, 3, mask.shape))  # integer levels in 0..8
    img[0, 0, 0], img[0, -1, -1], img[0, 5, 5] = 0, 2, 8
    return img.astype(np.float32), mask


def test_overwrites_key_by_default():
    img, mask = _bimodal()
    out = OtsuForegroundd(keys="image")({"image": torch.as_tensor(img), "label": mask})
    assert set(out) == {"image", "label"}
    assert isinstance(out["image"], torch.Tensor)
    np.testing.assert_array_equal(out["image"].numpy(), mask.astype(np.float32))


def test_output_key_keeps_input():
    img, mask = _bimodal()
    out = OtsuForegroundd(keys="image", output_key="otsu")({"image": img})
    assert set(out) == {"image", "otsu"}
    np.testing.assert_array_equal(out["image"], img)
    np.testing.assert_array_equal(out["otsu"], mask.astype(np.float32))


def test_several_keys():
    img, mask = _bimodal()
    out = OtsuForegroundd(keys=["a", "b"])({"a": img, "b": np.full_like(img, 2.0)})
    np.testing.assert_array_equal(out["a"], mask)
    np.testing.assert_array_equal(out["b"], 0.0)


def test_output_key_needs_one_key():
    with pytest.raises(ValueError, match="exactly one key"):
        OtsuForegroundd(keys=["a", "b"], output_key="otsu")


def test_allow_missing_keys():
    img, _ = _bimodal()
    out = OtsuForegroundd(keys=["image", "other"], allow_missing_keys=True)({"image": img})
    assert set(out) == {"image"}
    with pytest.raises(KeyError):
        OtsuForegroundd(keys="other")({"image": img})


def test_aliases():
    assert OtsuForegroundD is OtsuForegroundd
    assert OtsuForegroundDict is OtsuForegroundd
