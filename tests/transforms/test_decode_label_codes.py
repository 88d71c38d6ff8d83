"""DecodeLabelCodes(d): label maps pass, grey-coded masks decode to class indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_wsss.transforms import DecodeLabelCodes, DecodeLabelCodesd


def test_grey_codes_decode_to_the_nearest_class():
    # three classes coded 0/128/255; thresholds at 63.75 and 191.25; stray values 2-50 are background
    coded = np.array([[[0, 2, 50, 100, 128, 150, 200, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(DecodeLabelCodes(3)(coded), [[[0, 0, 0, 1, 1, 1, 2, 2]]])
    # two classes coded 0/255 (binary masks as saved by most tools)
    np.testing.assert_array_equal(DecodeLabelCodes(2)(np.array([[0, 255, 127, 128]])), [[0, 1, 0, 1]])


def test_label_maps_pass_unchanged_and_keep_meta():
    lbl = MetaTensor(torch.tensor([[[0.0, 1.0, 2.0]]]), meta={"filename_or_obj": "m.png"})
    out = DecodeLabelCodes(3)(lbl)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "m.png"
    assert out.dtype == torch.uint8 and out.tolist() == [[[0, 1, 2]]]
    # a binary 0/1 mask is a label map for two or more classes
    np.testing.assert_array_equal(DecodeLabelCodes(3)(np.array([0, 1, 1])), [0, 1, 1])


def test_masks_that_are_neither_label_maps_nor_codes_are_left_for_validation():
    odd = np.array([0, 1, 5, 1])  # a stray class 5 in a binary mask: far below the code 255 of class 1
    out = DecodeLabelCodes(2)(odd)
    np.testing.assert_array_equal(out, odd)


def test_dictionary_twin_and_bad_arguments():
    d = DecodeLabelCodesd("label", num_classes=3, allow_missing_keys=True)({"label": np.array([0, 128, 255])})
    np.testing.assert_array_equal(d["label"], [0, 1, 2])
    assert "label" not in DecodeLabelCodesd("label", 3, allow_missing_keys=True)({"image": np.zeros(2)})
    with pytest.raises(ValueError, match="num_classes"):
        DecodeLabelCodes(1)
