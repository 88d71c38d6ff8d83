"""The faster SignedDistanceMap (inside distance on the foreground's bounding box, NumPy end to end) gives the same
maps as the earlier implementation (MONAI's DistanceTransformEDT over the whole mask, torch boundary), on real masks,
and the DTC bundle's training transforms give the same tensors for a fixed seed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import DistanceTransformEDT
from monai.utils import set_determinism

from monai_wsss.data import default_dataset_dir
from monai_wsss.transforms import SignedDistanceMap, SignedDistanceMapd

BUNDLE = os.path.join(os.path.dirname(__file__), "..", "..", "bundles", "dtc_semisupervised_seg")


def _old_inner_boundary(mask: torch.Tensor) -> torch.Tensor:
    boundary = torch.zeros_like(mask)
    for axis in range(1, mask.ndim):
        n = mask.shape[axis]
        if n < 2:
            continue
        lo, hi = mask.narrow(axis, 0, n - 1), mask.narrow(axis, 1, n - 1)
        boundary.narrow(axis, 1, n - 1).logical_or_(hi & ~lo)
        boundary.narrow(axis, 0, n - 1).logical_or_(lo & ~hi)
    return boundary


def old_sdm(img: torch.Tensor, sampling=None) -> torch.Tensor:
    """The implementation before the speed-up (commit 189465e), kept here as the reference."""
    edt = DistanceTransformEDT(sampling=sampling)
    mask = torch.as_tensor(img) > 0
    out = torch.zeros(mask.shape, dtype=torch.float32)
    for c in range(mask.shape[0]):
        fg = mask[c : c + 1]
        if not fg.any():
            continue
        if fg.all():
            out[c] = -1.0
            continue
        d_in = torch.as_tensor(edt(fg.to(torch.uint8)), dtype=torch.float32)
        d_out = torch.as_tensor(edt((~fg).to(torch.uint8)), dtype=torch.float32)
        sdm = d_out / d_out.max() - d_in / d_in.max()
        sdm[_old_inner_boundary(fg)] = 0.0
        out[c] = sdm[0]
    return out


def _real_masks() -> list[torch.Tensor]:
    """Brain masks of the default data set (96x112x96, 2 mm): whole volumes and seeded crops of several sizes,
    including crops cut by the mask's edge and ones touching the volume's border."""
    import nibabel as nib

    root = default_dataset_dir()
    with open(os.path.join(root, "dataset.json")) as f:
        cases = json.load(f)["training"]
    rng = np.random.default_rng(0)
    masks = []
    for case in cases:
        vol = np.asarray(nib.load(os.path.join(root, case["label"])).dataobj) > 0
        masks.append(torch.from_numpy(vol[None]))
        for size in ((64, 64, 32), (40, 24, 48), (96, 112, 20)):
            for _ in range(3):
                lo = [int(rng.integers(0, n - s + 1)) for n, s in zip(vol.shape, size, strict=True)]
                crop = vol[tuple(slice(a, a + s) for a, s in zip(lo, size, strict=True))]
                masks.append(torch.from_numpy(np.ascontiguousarray(crop)[None]))
        masks.append(torch.from_numpy(vol[None, :, :, 48]))  # a 2D slice
    return masks


REAL_MASKS = _real_masks()


@pytest.mark.parametrize("sampling", [None, (2.0, 2.0, 1.25)])
def test_new_sdm_equals_old_on_real_masks(sampling):
    checked = 0
    for mask in REAL_MASKS:
        s = sampling if sampling is None or mask.ndim == 4 else sampling[:2]
        new = SignedDistanceMap(sampling=s)(mask)
        old = old_sdm(mask, sampling=s)
        assert new.shape == old.shape and new.dtype == torch.float32
        torch.testing.assert_close(new, old, atol=1e-5, rtol=0)
        checked += int(0 < mask.sum() < mask.numel())
    assert checked >= 20  # most crops hold both classes: the maps are not trivial


def test_bounding_box_cases():
    """Foreground on the border, one voxel, two distant blobs and a multi-channel mask."""
    m = torch.zeros(3, 20, 17, 9)
    m[0, 0:5, 3:9, 0:2] = 1  # touches three borders
    m[1, 10, 8, 4] = 1  # a single voxel
    m[2, 1:3, 1:3, 1:3] = 1
    m[2, 15:19, 12:16, 5:8] = 1  # two blobs: the box spans both
    torch.testing.assert_close(SignedDistanceMap()(m), old_sdm(m), atol=1e-6, rtol=0)
    assert SignedDistanceMap()(m)[1, 10, 8, 4] == 0.0  # a lone voxel is its own boundary


def test_numpy_input_keeps_type():
    m = np.zeros((1, 8, 9), dtype=np.uint8)
    m[0, 2:5, 3:7] = 1
    out = SignedDistanceMap()(m)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, old_sdm(torch.from_numpy(m)).numpy(), atol=1e-6)


def test_dtc_training_transforms_identical_for_a_fixed_seed():
    """The bundle's training transforms on the default data: for a fixed seed, the crops are unchanged (the speed-up
    touches only the SDF) and ``label_sdf`` equals the earlier implementation's map of the same crop."""
    parser = ConfigParser()
    parser.read_config(os.path.join(BUNDLE, "configs", "train.json"))
    parser["bundle_root"] = os.path.abspath(BUNDLE)
    root = default_dataset_dir()
    with open(os.path.join(root, "dataset.json")) as f:
        cases = json.load(f)["training"]
    data = [{k: os.path.join(root, case[k]) for k in ("image", "label")} for case in cases]
    pre = parser.get_parsed_content("train::preprocessing")
    sdf_index = [type(t) for t in pre.transforms].index(SignedDistanceMapd)
    set_determinism(seed=1337)
    pre.set_random_state(seed=1337)
    samples = [pre(d) for d in data for _ in range(3)]
    set_determinism(seed=None)
    nontrivial = 0
    for s in samples:
        assert s["label_sdf"].shape == s["label"].shape == (1, 64, 64, 32)
        assert isinstance(s["label_sdf"], torch.Tensor) and s["label_sdf"].dtype == torch.float32
        torch.testing.assert_close(s["label_sdf"], old_sdm(s["label"]), atol=1e-5, rtol=0)
        nontrivial += int(0 < s["label"].sum() < s["label"].numel())
    assert nontrivial >= 3
    # and the pipeline before the SDF is untouched: the same seed gives the same crop twice
    pre.set_random_state(seed=1337)
    again = pre(data[0])
    assert sdf_index == len(pre.transforms) - 2
    torch.testing.assert_close(again["image"], samples[0]["image"], atol=0, rtol=0)
    torch.testing.assert_close(again["label_sdf"], samples[0]["label_sdf"], atol=0, rtol=0)
