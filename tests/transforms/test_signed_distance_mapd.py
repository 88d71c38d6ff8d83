from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_wsss.transforms import (
    SignedDistanceMap,
    SignedDistanceMapD,
    SignedDistanceMapd,
    SignedDistanceMapDict,
)

TEST_NDARRAYS = (np.asarray, torch.as_tensor, lambda x: MetaTensor(torch.as_tensor(x)))
R2 = 1.0 / math.sqrt(2.0)
SQUARE = np.zeros((1, 5, 5), np.float32)
SQUARE[0, 1:4, 1:4] = 1
SQUARE_SDM = np.array(
    [
        [1.0, R2, R2, R2, 1.0],
        [R2, 0.0, 0.0, 0.0, R2],
        [R2, 0.0, -1.0, 0.0, R2],
        [R2, 0.0, 0.0, 0.0, R2],
        [1.0, R2, R2, R2, 1.0],
    ],
    np.float32,
)[None]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
def test_writes_label_sdf_and_keeps_label(in_type):
    label = in_type(SQUARE.copy())
    image = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    out = SignedDistanceMapd(keys="label")({"image": image, "label": label})
    assert set(out) == {"image", "label", "label_sdf"}
    assert out["label"] is label
    assert out["image"] is image
    assert type(out["label_sdf"]) is type(label)
    np.testing.assert_allclose(_np(out["label_sdf"]), SQUARE_SDM, atol=1e-6)
    np.testing.assert_array_equal(_np(out["label"]), SQUARE)


def test_input_dict_not_modified():
    data = {"label": SQUARE.copy()}
    SignedDistanceMapd(keys="label")(data)
    assert set(data) == {"label"}


def test_postfix_and_several_keys():
    other = np.zeros((1, 1, 6), np.float32)
    other[0, 0, 1:4] = 1
    out = SignedDistanceMapd(keys=["label", "mask"], postfix="dist")({"label": SQUARE, "mask": other})
    assert set(out) == {"label", "mask", "label_dist", "mask_dist"}
    np.testing.assert_allclose(out["label_dist"], SQUARE_SDM, atol=1e-6)
    np.testing.assert_allclose(out["mask_dist"], [[[0.5, 0.0, -1.0, 0.0, 0.5, 1.0]]], atol=1e-6)


def test_sampling_is_passed_on():
    rng = np.random.default_rng(0)
    m = (rng.random((1, 9, 7, 5)) > 0.6).astype(np.float32)
    spacing = (1.0, 3.0, 0.5)
    out = SignedDistanceMapd(keys="label", sampling=spacing)({"label": m})["label_sdf"]
    np.testing.assert_allclose(out, SignedDistanceMap(sampling=spacing)(m), atol=1e-6)
    assert not np.allclose(out, SignedDistanceMap()(m), atol=1e-3)


def test_allow_missing_keys():
    t = SignedDistanceMapd(keys="label", allow_missing_keys=True)
    out = t({"image": np.zeros((1, 4, 4))})
    assert set(out) == {"image"}
    with pytest.raises(KeyError):
        SignedDistanceMapd(keys="label")({"image": np.zeros((1, 4, 4))})


def test_aliases():
    assert SignedDistanceMapD is SignedDistanceMapd
    assert SignedDistanceMapDict is SignedDistanceMapd
