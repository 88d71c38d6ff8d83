"""Tests of ``validate_case`` / ``validate_datalist``: one clear error per bad dataset, and the readable formats."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from monai.transforms import LoadImage
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from monai_wsss.data import DatasetError, validate_case, validate_datalist

# third-party noise: MONAI's optional nvImageCodec DICOM plugin and ITK's SWIG types
pytestmark = pytest.mark.filterwarnings(
    "ignore:NvImgCodecPydicomReader", "ignore:builtin type .* has no __module__ attribute:DeprecationWarning"
)

SHAPE = (8, 8, 4)
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
AFFINE[:3, 3] = [-6.0, -6.0, -4.0]


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def _label(values=(0, 1), shape=SHAPE, dtype=np.uint8) -> np.ndarray:
    """A label whose voxels cycle through ``values`` (so each value is present)."""
    return np.resize(np.asarray(values, dtype=dtype), int(np.prod(shape))).reshape(shape)


@pytest.fixture
def case(tmp_path) -> dict:
    image = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    return {"image": _nifti(tmp_path / "img.nii.gz", image), "label": _nifti(tmp_path / "lbl.nii.gz", _label())}


def _shape_mismatch(case):
    _nifti(Path(case["label"]), _label(shape=(8, 8, 3)))
    return "label", ["label shape (8, 8, 3) differs from image shape (8, 8, 4)", case["image"]]


def _affine_mismatch(case):
    shifted = AFFINE.copy()
    shifted[0, 0] = 1.0  # 1 mm instead of 1.5 mm in x
    _nifti(Path(case["label"]), _label(), affine=shifted)
    return "label", ["label affine differs", "max difference 0.5", case["image"]]


def _undeclared_values(case):
    _nifti(Path(case["label"]), _label(values=(0, 1, 3, 7)))
    return "label", ["label values [3, 7] are not among the declared labels [0, 1]"]


def _non_integer_label(case):
    _nifti(Path(case["label"]), _label(values=(0.0, 0.5, 1.0), dtype=np.float32))
    return "label", ["non-integer"]


def _nan_image(case):
    image = np.ones(SHAPE, np.float32)
    image[3, 4, 1] = np.nan
    _nifti(Path(case["image"]), image)
    return "image", ["image contains NaN or infinite values"]


def _inf_image(case):
    image = np.ones(SHAPE, np.float32)
    image[0, 0, 0] = -np.inf
    _nifti(Path(case["image"]), image)
    return "image", ["image contains NaN or infinite values"]


def _corrupt_label(case):
    Path(case["label"]).write_bytes(bytes(range(256)) * 4)
    return "label", ["cannot be read as an image"]


def _corrupt_image(case):
    Path(case["image"]).write_bytes(b"\x00garbage, not a NIfTI file" * 10)
    return "image", ["cannot be read as an image"]


def _missing_label(case):
    os.remove(case["label"])
    return "label", ["file not found"]


def _missing_image(case):
    os.remove(case["image"])
    return "image", ["file not found"]


BREAKERS = [
    _shape_mismatch,
    _affine_mismatch,
    _undeclared_values,
    _non_integer_label,
    _nan_image,
    _inf_image,
    _corrupt_label,
    _corrupt_image,
    _missing_label,
    _missing_image,
]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.lstrip("_"))
def test_one_error_names_file_and_problem(case, breaker):
    key, expected = breaker(case)
    problems = validate_case(case, label_values=[0, 1])
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{case[key]}: ")
    for text in expected:
        assert text in problems[0]

    with pytest.raises(DatasetError) as err:
        validate_datalist([case], label_values=[0, 1])
    assert str(err.value) == f"1 problem in the dataset:\n  {problems[0]}"


def test_good_case_passes(case):
    assert validate_case(case, label_values=[0, 1]) == []
    assert validate_case({"image": case["image"]}) == []  # an unlabelled case
    assert validate_datalist([case, {"image": case["image"]}], label_values=[0, 1]) is None


def test_undeclared_values_pass_without_declared_labels(case):
    _nifti(Path(case["label"]), _label(values=(0, 1, 3, 7)))
    assert validate_case(case) == []


def test_case_without_image_path():
    assert validate_case({"label": "x.nii.gz"}) == ["{'label': 'x.nii.gz'}: case has no 'image' path."]


@pytest.mark.parametrize("offset, n_problems", [(1e-4, 0), (1e-2, 1)])
def test_affine_tolerance(case, offset, n_problems):
    moved = AFFINE.copy()
    moved[:3, 3] += offset
    _nifti(Path(case["label"]), _label(), affine=moved)
    assert len(validate_case(case, affine_atol=1e-3)) == n_problems


def test_reader_error_without_message(case):
    """A reader that fails with an empty message is still reported as one line naming the file."""

    def loader(path):
        raise RuntimeError()

    assert validate_case({"image": case["image"]}, loader=loader) == [
        f"{case['image']}: cannot be read as an image (RuntimeError: )."
    ]


def test_several_problems_one_error(tmp_path, case):
    image = np.zeros(SHAPE, np.float32)
    good = {"image": _nifti(tmp_path / "good.nii.gz", image), "label": _nifti(tmp_path / "good_l.nii.gz", _label())}
    nan_image = image.copy()
    nan_image[1, 1, 1] = np.nan
    bad_image = _nifti(tmp_path / "nan.nii.gz", nan_image)
    bad_label = _nifti(tmp_path / "small_l.nii.gz", _label(shape=(4, 8, 4)))
    missing = str(tmp_path / "missing_l.nii.gz")
    items = [
        good,
        {"image": bad_image, "label": case["label"]},
        {"image": case["image"], "label": bad_label},
        {"image": case["image"], "label": missing},
        {"image": good["image"]},
    ]
    with pytest.raises(DatasetError) as err:
        validate_datalist(items, label_values=[0, 1])
    lines = str(err.value).split("\n")
    assert lines[0] == "3 problems in the dataset:"
    assert lines[1].startswith(f"  {bad_image}: image contains NaN")
    assert lines[2].startswith(f"  {bad_label}: label shape (4, 8, 4) differs")
    assert lines[3] == f"  {missing}: file not found."
    assert len(lines) == 4


# ---------------------------------------------------------------------------------------------------------------
# Formats. One 8 x 6 x 4 volume, anisotropic (0.5, 0.75, 2.0) mm, written as NIfTI, NRRD, MHA and a DICOM series.
# ITK-style files (NRRD, MHA, DICOM) store physical coordinates in LPS; NIfTI and MONAI's affines are RAS. With the
# geometry below (LPS origin (10, -20, 5), identity LPS direction), MONAI's ITKReader turns the LPS geometry into
# the RAS affine diag(-0.5, -0.75, 2) with origin (-10, 20, 5), and NibabelReader reads that RAS affine back from
# the NIfTI file unchanged: the same scan gives the same affine in every format, so a NIfTI label written with the
# RAS affine matches a DICOM image. A NIfTI label written naively from the DICOM numbers (origin and axes taken
# as RAS) is a real geometry error, and the validator reports the affine mismatch.
# ---------------------------------------------------------------------------------------------------------------

VOLUME = np.arange(8 * 6 * 4, dtype=np.uint16).reshape(8, 6, 4)  # (x, y, z) = (columns, rows, slices)
SPACING = (0.5, 0.75, 2.0)
ORIGIN_LPS = (10.0, -20.0, 5.0)
RAS_AFFINE = np.array(
    [[-0.5, 0.0, 0.0, -10.0], [0.0, -0.75, 0.0, 20.0], [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]], dtype=float
)
NAIVE_AFFINE = np.array(
    [[0.5, 0.0, 0.0, 10.0], [0.0, 0.75, 0.0, -20.0], [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]], dtype=float
)


def _write_itk(path: Path, volume: np.ndarray) -> str:
    img = sitk.GetImageFromArray(np.transpose(volume, (2, 1, 0)))  # SimpleITK arrays are (z, y, x)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN_LPS)
    sitk.WriteImage(img, str(path))
    return str(path)


def _write_dicom_series(folder: Path, volume: np.ndarray) -> str:
    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    n_slices = volume.shape[2]
    for k in range(n_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{n_slices - 1 - k:04d}.dcm"  # file names in reverse slice order: readers must sort
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientName, ds.PatientID = "Test^Phantom", "0001"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [ORIGIN_LPS[0], ORIGIN_LPS[1], ORIGIN_LPS[2] + SPACING[2] * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [SPACING[1], SPACING[0]]  # [between rows (y), between columns (x)]
        ds.SliceThickness = SPACING[2]
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T).tobytes()  # row-major (rows, columns)
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return str(folder)


WRITERS = {
    "nifti": lambda d: _nifti(d / "vol.nii.gz", VOLUME, RAS_AFFINE),
    "nrrd": lambda d: _write_itk(d / "vol.nrrd", VOLUME),
    "mha": lambda d: _write_itk(d / "vol.mha", VOLUME),
    "dicom": lambda d: _write_dicom_series(d / "series", VOLUME),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_formats_load_with_same_geometry(tmp_path, fmt):
    path = WRITERS[fmt](tmp_path)
    img = LoadImage(image_only=True, ensure_channel_first=True)(path)
    assert tuple(img.shape) == (1, 8, 6, 4)
    np.testing.assert_array_equal(np.asarray(img[0]), VOLUME)
    np.testing.assert_allclose(np.asarray(img.affine), RAS_AFFINE, atol=1e-6)
    assert validate_case({"image": path}) == []


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_formats_with_nifti_label(tmp_path, fmt):
    image = WRITERS[fmt](tmp_path)
    label = _nifti(tmp_path / "label.nii.gz", _label(shape=(8, 6, 4)), RAS_AFFINE)
    assert validate_case({"image": image, "label": label}, label_values=[0, 1]) == []


def test_dicom_image_with_label_in_lps_numbers(tmp_path):
    image = _write_dicom_series(tmp_path / "series", VOLUME)
    label = _nifti(tmp_path / "label.nii.gz", _label(shape=(8, 6, 4)), NAIVE_AFFINE)
    problems = validate_case({"image": image, "label": label})
    assert problems == [f"{label}: label affine differs from the affine of {image} (max difference 40)."]


def test_dicom_image_with_label_from_loaded_affine(tmp_path):
    image = _write_dicom_series(tmp_path / "series", VOLUME)
    loaded = LoadImage(image_only=True, ensure_channel_first=True)(image)
    label = _nifti(tmp_path / "label.nii.gz", (np.asarray(loaded[0]) > 50).astype(np.uint8), np.asarray(loaded.affine))
    assert validate_case({"image": image, "label": label}, label_values=[0, 1]) == []


def test_label_transform_decodes_before_the_value_check(tmp_path):
    from monai_wsss.transforms import DecodeLabelCodes
    from monai_wsss.utils import atomic_write_image

    atomic_write_image(str(tmp_path / "img.png"), np.zeros((3, 8, 8), np.uint8))
    atomic_write_image(str(tmp_path / "msk.png"), np.array([[[0, 128, 255, 7]] * 8] * 1, np.uint8).repeat(2, axis=2))
    item = {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "msk.png")}
    problems = validate_case(item, label_values=[0, 1, 2])
    assert len(problems) == 1 and "msk.png" in problems[0] and "[7, 128, 255]" in problems[0]
    assert validate_case(item, label_values=[0, 1, 2], label_transform=DecodeLabelCodes(3)) == []
