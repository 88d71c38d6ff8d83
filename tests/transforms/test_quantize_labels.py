"""Tests of QuantizeLabels and its dictionary twin QuantizeLabelsd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_wsss.transforms import QuantizeLabels, QuantizeLabelsD, QuantizeLabelsd, QuantizeLabelsDict

TEST_NDARRAYS = (np.asarray, torch.as_tensor, lambda x: MetaTensor(torch.as_tensor(x)))

# a blood-smear style mask: codes 0 / 128 / 255 with stray low values that are background
CODED = np.array([[[0, 2, 50, 63, 64], [127, 128, 191, 192, 255]]], np.uint8)
EXPECTED = np.array([[[0, 0, 0, 0, 1], [1, 1, 1, 2, 2]]], np.uint8)  # thresholds [64, 192], counted by hand


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
@pytest.mark.parametrize("src_dtype", [np.uint8, np.int64, np.float32])
def test_hand_computed_values(in_type, src_dtype):
    x = in_type(CODED.astype(src_dtype))
    out = QuantizeLabels([64, 192])(x)
    assert type(out) is type(x)
    assert out.dtype in (np.uint8, torch.uint8)
    assert tuple(out.shape) == CODED.shape
    np.testing.assert_array_equal(_np(out), EXPECTED)


def test_fractional_thresholds_and_values():
    x = torch.tensor([[-1.0, 0.49, 0.5, 0.51, 1.5, 2.5, 9.0]])
    out = QuantizeLabels([0.5, 1.5, 2.5], dtype=torch.int64)(x)
    assert out.dtype == torch.int64
    np.testing.assert_array_equal(_np(out), [[0, 0, 1, 1, 2, 3, 3]])


def test_output_dtype_follows_input_type():
    assert QuantizeLabels([0.5], dtype=torch.float32)(np.array([0, 1])).dtype == np.float32
    assert QuantizeLabels([0.5], dtype=np.int32)(torch.tensor([0, 1])).dtype == torch.int32


def test_meta_tensor_keeps_meta():
    x = MetaTensor(torch.as_tensor(CODED), meta={"filename_or_obj": "smear_mask.png"})
    out = QuantizeLabels([64, 192])(x)
    assert isinstance(out, MetaTensor)
    assert out.meta["filename_or_obj"] == "smear_mask.png"
    np.testing.assert_array_equal(_np(out), EXPECTED)


@pytest.mark.parametrize("thresholds", [[192, 64], [64, 64], [], [0, float("nan")]])
def test_bad_thresholds_raise(thresholds):
    with pytest.raises(ValueError, match="thresholds"):
        QuantizeLabels(thresholds)


def test_too_many_classes_for_dtype_raise():
    with pytest.raises(ValueError, match="dtype"):
        QuantizeLabels(list(range(300)))  # 301 classes do not fit in uint8
    assert QuantizeLabels(list(range(300)), dtype=np.int16)(np.array([299.5])).tolist() == [300]


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
def test_dict_twin(in_type):
    data = {"image": in_type(CODED.astype(np.float32)), "label": in_type(CODED)}
    out = QuantizeLabelsd("label", thresholds=[64, 192])(data)
    np.testing.assert_array_equal(_np(out["label"]), EXPECTED)
    assert out["image"] is data["image"]  # other keys untouched
    assert type(out["label"]) is type(data["label"])
    np.testing.assert_array_equal(_np(data["label"]), CODED)  # input dict not modified


def test_dict_twin_missing_keys_and_aliases():
    assert QuantizeLabelsD is QuantizeLabelsDict is QuantizeLabelsd
    t = QuantizeLabelsd(["label", "label_weak"], thresholds=[64, 192], allow_missing_keys=True)
    out = t({"label": CODED})
    assert set(out) == {"label"}
    np.testing.assert_array_equal(out["label"], EXPECTED)
    with pytest.raises(KeyError):
        QuantizeLabelsd("label", thresholds=[64, 192])({"image": CODED})
    with pytest.raises(ValueError):
        QuantizeLabelsd("label", thresholds=[192, 64])
