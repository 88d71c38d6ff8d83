from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy.ndimage import distance_transform_edt, gaussian_filter
from skimage.segmentation import find_boundaries

from monai_wsss.transforms import SignedDistanceMap

TEST_NDARRAYS = (np.asarray, torch.as_tensor, lambda x: MetaTensor(torch.as_tensor(x)))
R2 = 1.0 / math.sqrt(2.0)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_type(out, img) -> None:
    if isinstance(img, MetaTensor):
        assert isinstance(out, MetaTensor)
    elif isinstance(img, torch.Tensor):
        assert isinstance(out, torch.Tensor) and not isinstance(out, MetaTensor)
    else:
        assert isinstance(out, np.ndarray)
    assert out.dtype in (np.float32, torch.float32)


def reference_sdm(mask: np.ndarray, sampling=None) -> np.ndarray:
    """METHODS.md section 1: normalised EDT of background minus normalised EDT of foreground, inner boundary 0."""
    pos = mask.astype(bool)
    if not pos.any():
        return np.zeros(mask.shape, np.float32)
    neg = ~pos
    posdis = distance_transform_edt(pos, sampling=sampling)
    negdis = distance_transform_edt(neg, sampling=sampling)
    sdf = (negdis - negdis.min()) / (negdis.max() - negdis.min()) - (posdis - posdis.min()) / (
        posdis.max() - posdis.min()
    )
    sdf[find_boundaries(pos, mode="inner")] = 0.0
    return sdf.astype(np.float32)


def _square() -> np.ndarray:
    m = np.zeros((1, 5, 5), np.float32)
    m[0, 1:4, 1:4] = 1
    return m


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

LINE = np.array([[[0, 1, 1, 1, 0, 0]]], np.float32)
LINE_SDM = np.array([[[0.5, 0.0, -1.0, 0.0, 0.5, 1.0]]], np.float32)

# 4x4 foreground with only (0, 0) in background: (1, 1) touches the background diagonally only (not boundary),
# (0, 2) and (2, 0) touch the image border only (not boundary). d_in max = |(3,3)-(0,0)| = 3*sqrt(2), d_out max = 1.
NOTCH = np.ones((1, 4, 4), np.float32)
NOTCH[0, 0, 0] = 0
_D = 3 * math.sqrt(2)
NOTCH_SDM = np.array(
    [
        [1.0, 0.0, -2 / _D, -3 / _D],
        [0.0, -1 / 3, -math.sqrt(5) / _D, -math.sqrt(10) / _D],
        [-2 / _D, -math.sqrt(5) / _D, -2 / 3, -math.sqrt(13) / _D],
        [-3 / _D, -math.sqrt(10) / _D, -math.sqrt(13) / _D, -1.0],
    ],
    np.float32,
)[None]

# 3D: 3x3x3 foreground cube in a 5x5x5 volume; the farthest background voxel (a corner) is sqrt(3) away
CUBE = np.zeros((1, 5, 5, 5), np.float32)
CUBE[0, 1:4, 1:4, 1:4] = 1

TESTS_EXACT = []
for p in TEST_NDARRAYS:
    TESTS_EXACT += [(p, LINE, LINE_SDM), (p, _square(), SQUARE_SDM), (p, NOTCH, NOTCH_SDM)]


@pytest.mark.parametrize("in_type, mask, expected", TESTS_EXACT)
def test_exact_values_2d(in_type, mask, expected):
    img = in_type(mask)
    out = SignedDistanceMap()(img)
    _check_type(out, img)
    assert tuple(out.shape) == mask.shape
    np.testing.assert_allclose(_np(out), expected, atol=1e-6)


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
def test_exact_values_3d_cube(in_type):
    img = in_type(CUBE)
    out = SignedDistanceMap()(img)
    _check_type(out, img)
    out = _np(out)[0]
    assert out[2, 2, 2] == pytest.approx(-1.0)  # centre: d_in = 2 = max d_in
    inside = CUBE[0].astype(bool)
    inside[2, 2, 2] = False
    np.testing.assert_array_equal(out[inside], 0.0)  # the other 26 cube voxels are all on the inner boundary
    r3 = math.sqrt(3.0)
    assert out[0, 2, 2] == pytest.approx(1 / r3)  # face-adjacent to the cube
    assert out[0, 0, 2] == pytest.approx(math.sqrt(2) / r3)  # edge-adjacent
    assert out[0, 0, 0] == pytest.approx(1.0)  # corner: the farthest background voxel
    assert out[4, 4, 4] == pytest.approx(1.0)
    np.testing.assert_allclose(out, reference_sdm(CUBE[0]), atol=1e-6)


def test_single_voxel_3d():
    m = np.zeros((1, 3, 3, 3), np.float32)
    m[0, 1, 1, 1] = 1
    out = SignedDistanceMap()(m)[0]
    assert out[1, 1, 1] == 0.0  # the only foreground voxel is boundary
    r3 = math.sqrt(3)
    assert out[0, 1, 1] == pytest.approx(1 / r3)
    assert out[0, 0, 1] == pytest.approx(math.sqrt(2) / r3)
    assert out[0, 0, 0] == pytest.approx(1.0)
    assert out.min() == 0.0


def _blob(shape=(20, 18, 16), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.random(shape), 2.0)
    m = field > np.quantile(field, 0.6)
    assert m.any() and not m.all()
    return m


def test_random_3d_blob_matches_reference():
    blob = _blob()
    # the blob touches the image border: border voxels are not boundary unless a face neighbour is background
    assert blob[0].any() or blob[-1].any() or blob[:, 0].any() or blob[:, -1].any()
    out = SignedDistanceMap()(blob[None].astype(np.float32))
    np.testing.assert_allclose(out[0], reference_sdm(blob), atol=1e-5)
    # sign, boundary and range
    boundary = find_boundaries(blob, mode="inner")
    assert boundary.any()
    np.testing.assert_array_equal(out[0][boundary], 0.0)
    assert (out[0][blob & ~boundary] < 0).all()
    assert (out[0][~blob] > 0).all()
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_random_3d_blob_anisotropic_sampling():
    blob = _blob(seed=3)
    spacing = (1.0, 2.5, 0.7)
    out = SignedDistanceMap(sampling=spacing)(torch.as_tensor(blob[None]))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out[0].numpy(), reference_sdm(blob, sampling=spacing), atol=1e-5)
    # the spacing matters
    assert not np.allclose(out[0].numpy(), reference_sdm(blob), atol=1e-3)


def test_random_2d_blob_matches_reference():
    blob = _blob(shape=(30, 25), seed=1)
    out = SignedDistanceMap()(blob[None].astype(np.uint8))
    np.testing.assert_allclose(out[0], reference_sdm(blob), atol=1e-5)


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
@pytest.mark.parametrize("shape", [(1, 6, 7), (2, 4, 5, 3)])
def test_empty_mask_gives_zeros(in_type, shape):
    img = in_type(np.zeros(shape, np.float32))
    out = SignedDistanceMap()(img)
    _check_type(out, img)
    np.testing.assert_array_equal(_np(out), np.zeros(shape, np.float32))


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
@pytest.mark.parametrize("shape", [(1, 6, 7), (1, 4, 5, 3)])
def test_full_mask_gives_minus_one(in_type, shape):
    img = in_type(np.ones(shape, np.float32))
    out = SignedDistanceMap()(img)
    np.testing.assert_array_equal(_np(out), -np.ones(shape, np.float32))


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
def test_channels_are_independent(in_type):
    line = np.zeros((5, 5), np.float32)
    line[2, :] = 1  # a full row: every voxel of it touches the background
    chans = np.stack([_square()[0], np.zeros((5, 5)), np.ones((5, 5)), line]).astype(np.float32)
    img = in_type(chans)
    out = _np(SignedDistanceMap()(img))
    assert out.shape == (4, 5, 5)
    np.testing.assert_allclose(out[0], SQUARE_SDM[0], atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(out[2], -1.0)
    np.testing.assert_array_equal(out[3][2], 0.0)
    # background rows at distance 1 and 2 from the line, normalised by 2
    np.testing.assert_allclose(out[3][[0, 1, 3, 4]], np.array([[1.0], [0.5], [0.5], [1.0]]) * np.ones(5), atol=1e-6)
    for c in range(4):
        np.testing.assert_allclose(out[c], _np(SignedDistanceMap()(in_type(chans[c : c + 1])))[0], atol=1e-6)


@pytest.mark.parametrize("in_type", TEST_NDARRAYS)
def test_non_binary_labels_are_foreground(in_type):
    m = _square()
    m[0, 1, 1] = 7
    m[0, 2, 2] = 3
    m[0, 0, 0] = -2  # not > 0: background
    out = SignedDistanceMap()(in_type(m))
    np.testing.assert_allclose(_np(out), SQUARE_SDM, atol=1e-6)


def test_bool_input():
    out = SignedDistanceMap()(torch.as_tensor(_square() > 0))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), SQUARE_SDM, atol=1e-6)


def test_metatensor_meta_kept():
    img = MetaTensor(torch.as_tensor(_square()), affine=torch.diag(torch.tensor([2.0, 2.0, 1.0])))
    img.meta["filename_or_obj"] = "case_1.nii.gz"
    out = SignedDistanceMap()(img)
    assert isinstance(out, MetaTensor)
    assert out.meta["filename_or_obj"] == "case_1.nii.gz"
    np.testing.assert_allclose(out.affine.numpy(), img.affine.numpy())


@pytest.mark.parametrize("shape", [(5, 5), (6,), (1, 2, 3, 4, 5)])
def test_bad_ndim_raises(shape):
    with pytest.raises(ValueError, match="channel-first"):
        SignedDistanceMap()(np.ones(shape))
