"""
Corrupt and mismatched inputs, made for real in each test (a truncated .nii.gz, a flipped CRC byte, a header claiming
32767^3 voxels, a DICOM series with a truncated, missing or misplaced slice, 2D / 3D / 4D images given to the wrong
bundle, repeated cases, labels without a ``labels`` map, missing files in inference and tagged lists): each gives
one :py:class:`monai_wsss.data.DatasetError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from monai_wsss.data import (
    GZIP_MAX_RATIO,
    DatasetError,
    check_dicom_series,
    check_file_integrity,
    list_images,
    load_semisupervised_datalist,
    load_tagged_datalist,
    load_test_datalist,
    validate_case,
)
from monai_wsss.errors import InputError

pytestmark = [
    pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader"),
    pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
]

RNG = np.random.default_rng(0)


def _nifti(path: Path, array: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return str(path)


def _volume(shape=(16, 16, 8)) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


# --- NIfTI read to the last byte ---------------------------------------------------------------------------------


def test_sound_nifti_passes(tmp_path):
    path = _nifti(tmp_path / "a.nii.gz", _volume())
    assert check_file_integrity(path) is None
    assert validate_case({"image": path}) == []


def test_flipped_crc_byte_is_refused(tmp_path):
    path = _nifti(tmp_path / "a.nii.gz", _volume())
    raw = bytearray(Path(path).read_bytes())
    raw[-8] ^= 0xFF  # first byte of the gzip trailer's CRC-32: the data itself still decompresses
    Path(path).write_bytes(bytes(raw))
    problems = validate_case({"image": path})
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: the gzip data is corrupt")
    assert "CRC check failed" in problems[0]


def test_flipped_data_byte_is_refused(tmp_path):
    path = _nifti(tmp_path / "a.nii.gz", _volume((32, 32, 16)))
    raw = bytearray(Path(path).read_bytes())
    raw[len(raw) // 2] ^= 0x55  # inside the deflate stream
    Path(path).write_bytes(bytes(raw))
    problems = validate_case({"image": path})
    assert len(problems) == 1 and problems[0].startswith(f"{path}: "), problems
    assert "gzip" in problems[0] or "truncated" in problems[0]


def test_truncated_gzip_is_refused(tmp_path):
    path = _nifti(tmp_path / "a.nii.gz", _volume())
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: int(len(raw) * 0.6)])
    assert check_file_integrity(path) == (
        f"{path}: the gzip stream is truncated (the file ends before its end-of-stream marker); "
        "re-copy or re-export the file."
    )


def test_truncated_uncompressed_nifti_is_refused(tmp_path):
    path = _nifti(tmp_path / "a.nii", _volume((8, 8, 4)))  # 352-byte header + 8*8*4*4 = 1024 data bytes
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[:-100])
    assert check_file_integrity(path) == (
        f"{path}: truncated: the header promises 1376 bytes of data (8x8x4 voxels of 4 bytes from offset 352) but "
        "the file has 1276; re-copy or re-export the file."
    )


def _huge_header(path: Path, gz: bool) -> str:
    header = nib.Nifti1Header()
    header.set_data_shape((32767, 32767, 32767))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    blob = header.binaryblock + b"\0" * 4 + b"\0" * 4096
    if gz:
        import gzip

        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return str(path)


@pytest.mark.parametrize("gz", [True, False], ids=["nii.gz", "nii"])
def test_absurd_header_is_refused_before_allocating(tmp_path, gz):
    path = _huge_header(tmp_path / ("huge.nii.gz" if gz else "huge.nii"), gz)
    tracemalloc.start()
    try:
        problems = validate_case({"image": path})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(problems) == 1 and problems[0].startswith(f"{path}: "), problems
    assert peak < 64 * 2**20  # 32767^3 int16 voxels would be 70 TB
    if gz:
        assert "32767x32767x32767 volume of 2-byte voxels (7.04e+04 GB)" in problems[0]
        assert f"gzip expands at most {GZIP_MAX_RATIO}:1" in problems[0]
    else:
        assert "truncated: the header promises 70362301923678 bytes" in problems[0]


# --- DICOM series --------------------------------------------------------------------------------------------------


def _dicom_series(folder: Path, n_slices: int = 5, spacing: float = 2.0, shape=(6, 8)) -> list[Path]:
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(n_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
        ds.PatientName, ds.PatientID = "Test^Phantom", "0001"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, generate_uid()
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, spacing * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], spacing
        ds.Rows, ds.Columns = shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = (np.arange(shape[0] * shape[1], dtype=np.uint16) + 10 * k).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def test_sound_dicom_series_passes(tmp_path):
    _dicom_series(tmp_path / "s")
    assert check_dicom_series(str(tmp_path / "s")) == []
    assert validate_case({"image": str(tmp_path / "s")}) == []


def test_truncated_dicom_slice_is_named(tmp_path):
    paths = _dicom_series(tmp_path / "s")
    raw = paths[2].read_bytes()
    paths[2].write_bytes(raw[:-30])  # the end of the pixel data is lost
    problems = validate_case({"image": str(tmp_path / "s")})
    assert len(problems) == 1
    assert problems[0].startswith(f"{paths[2]}: ")
    assert "truncated DICOM slice" in problems[0] or "not a readable DICOM file" in problems[0]


def test_missing_dicom_slice_is_refused(tmp_path):
    paths = _dicom_series(tmp_path / "s")
    paths[2].unlink()
    problems = check_dicom_series(str(tmp_path / "s"))
    assert problems[0] == (
        f"{tmp_path / 's'}: DICOM series is missing the slices with InstanceNumber [3] (has 4 slices numbered 1..5);"
        " re-copy the whole series."
    )
    irregular = f"{tmp_path / 's'}: irregular DICOM slice spacing along the slice normal (gaps from 2 to 4 mm"
    assert problems[1].startswith(irregular)


def test_irregular_dicom_spacing_is_refused(tmp_path):
    paths = _dicom_series(tmp_path / "s")
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = [0.0, 0.0, 7.0]  # 6.0 expected: gaps 2, 2, 3, 1
    ds.save_as(paths[3])
    problems = validate_case({"image": str(tmp_path / "s")})
    assert problems == [
        f"{tmp_path / 's'}: irregular DICOM slice spacing along the slice normal (gaps from 1 to 3 mm, median 2): "
        "a slice is missing, repeated or out of the series; re-copy the whole series."
    ]


# --- what the bundle's network takes -------------------------------------------------------------------------------


def test_2d_image_to_a_3d_bundle(tmp_path):
    path = _nifti(tmp_path / "flat.nii.gz", _volume((16, 16)))
    assert validate_case({"image": path}, spatial_dims=3, channels=1) == [
        f"{path}: a 2D image (shape (16, 16), 1 channel(s)), but this bundle's network takes 3D images; give 3D "
        "files or use a 2D bundle."
    ]
    assert validate_case({"image": path}, spatial_dims=2, channels=1) == []


def test_3d_image_to_a_2d_bundle(tmp_path):
    path = _nifti(tmp_path / "vol.nii.gz", _volume((16, 16, 4)))
    problems = validate_case({"image": path}, spatial_dims=2)
    assert problems == [
        f"{path}: a 3D image (shape (16, 16, 4), 1 channel(s)), but this bundle's network takes 2D images; give 2D "
        "files or use a 3D bundle."
    ]


def test_4d_image_is_refused(tmp_path):
    path = _nifti(tmp_path / "time.nii.gz", _volume((8, 8, 4, 3)))
    assert validate_case({"image": path}, spatial_dims=3, channels=1) == [
        f"{path}: has 3 channel(s) (a 4D image: its 4th axis is read as channels), but this bundle's network takes 1;"
        " give images with 1 channel(s) or set the bundle's input channels."
    ]


def test_constant_image_warns(tmp_path):
    path = _nifti(tmp_path / "c.nii.gz", np.full((8, 8, 4), 3.0, np.float32))
    with pytest.warns(UserWarning, match=r"c\.nii\.gz: the image is constant \(every voxel is 3\)"):
        assert validate_case({"image": path}) == []


# --- datalists -----------------------------------------------------------------------------------------------------


def _folder(tmp_path: Path, **lists) -> str:
    lbl = np.zeros((8, 8, 4), np.uint8)
    lbl[2:5, 2:5, 1:3] = 1
    for name in ("a", "b", "c"):
        _nifti(tmp_path / f"{name}.nii.gz", _volume((8, 8, 4)))
        _nifti(tmp_path / f"{name}_l.nii.gz", lbl)
    meta = {"labels": {"0": "background", "1": "fg"}, **lists}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    return str(tmp_path)


def test_case_in_training_and_test_is_refused(tmp_path):
    d = _folder(
        tmp_path,
        training=[{"image": "a.nii.gz", "label": "a_l.nii.gz"}, {"image": "b.nii.gz"}],
        test=[{"image": "a.nii.gz", "label": "a_l.nii.gz"}],
    )
    with pytest.raises(DatasetError) as err:
        load_semisupervised_datalist(d)
    assert str(err.value) == (
        f"{d}/dataset.json: 1 repeated case(s):\n  {d}/a.nii.gz: listed 2 times ('training', 'test'): a case in "
        "both training and test"
    )
    assert err.value.hint == "list each case once, and keep test cases out of the training lists."


def test_validation_may_share_cases_but_test_may_not(tmp_path):
    case = {"image": "a.nii.gz", "label": "a_l.nii.gz"}
    d = _folder(tmp_path, training=[case, {"image": "b.nii.gz"}], validation=[case], test=[{"image": "c.nii.gz"}])
    assert load_semisupervised_datalist(d)["validation"][0]["image"] == f"{d}/a.nii.gz"
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["test"] = [case]
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(
        DatasetError, match=r"listed 3 times \('training', 'validation', 'test'\): a case in both train"
    ):
        load_semisupervised_datalist(d)


def test_duplicated_case_is_refused(tmp_path):
    d = _folder(tmp_path, training=[{"image": "a.nii.gz", "label": "a_l.nii.gz"}, {"image": "./a.nii.gz"}])
    with pytest.raises(DatasetError, match=r"a\.nii\.gz: listed 2 times \('training', 'training'\)$"):
        load_semisupervised_datalist(d)


def test_labels_map_is_required(tmp_path):
    d = _folder(tmp_path, training=[{"image": "a.nii.gz", "label": "a_l.nii.gz"}, {"image": "b.nii.gz"}])
    meta = json.loads((tmp_path / "dataset.json").read_text())
    del meta["labels"]
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="cases have label files but the datalist has no 'labels' map") as err:
        load_semisupervised_datalist(d)
    assert err.value.file is None and "labels" in err.value.hint
    assert load_semisupervised_datalist(d, validate=False)["labeled"]  # the check belongs to validation
    with pytest.raises(DatasetError, match="no 'labels' map"):
        load_test_datalist(d, datalist=str(tmp_path / "dataset.json"), key="training")  # evaluation checks values too


def test_inference_list_with_missing_file(tmp_path):
    d = _folder(tmp_path, training=[{"image": "a.nii.gz", "label": "a_l.nii.gz"}], test=[{"image": "gone.nii.gz"}])
    with pytest.raises(DatasetError) as err:
        list_images(d)
    assert str(err.value) == f"1 problem in the dataset:\n  {d}/gone.nii.gz: file not found."
    assert list_images(d, validate=False) == [f"{d}/gone.nii.gz"]


def test_inference_list_wrong_dims(tmp_path):
    d = _folder(tmp_path, training=[{"image": "a.nii.gz", "label": "a_l.nii.gz"}], test=[{"image": "b.nii.gz"}])
    assert list_images(d, spatial_dims=3, channels=1) == [f"{d}/b.nii.gz"]
    with pytest.raises(DatasetError, match=r"b\.nii\.gz: a 3D image .* takes 2D images"):
        list_images(d, spatial_dims=2)


def test_tagged_list_with_missing_and_corrupt_files(tmp_path):
    d = _folder(
        tmp_path,
        classes=["fg"],
        training=[{"image": "a.nii.gz", "class_labels": [1]}, {"image": "gone.nii.gz", "class_labels": [0]}],
        test=[{"image": "b.nii.gz", "label": "b_l.nii.gz", "class_labels": [1]}],
    )
    raw = (tmp_path / "b_l.nii.gz").read_bytes()
    (tmp_path / "b_l.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError) as err:
        load_tagged_datalist(d)
    lines = str(err.value).splitlines()
    assert lines[0] == "2 problems in the dataset:"
    assert lines[1] == f"  {d}/gone.nii.gz: file not found."
    assert lines[2].startswith(f"  {d}/b_l.nii.gz: cannot be read as an image (the gzip stream is truncated")
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)


def test_default_sized_volume_passes(tmp_path):
    """A 2 mm brain-sized volume (96 x 112 x 96 float32, like the default data) passes every check."""
    path = _nifti(tmp_path / "brain.nii.gz", _volume((96, 112, 96)))
    assert os.path.getsize(path) > 1e6
    assert validate_case({"image": path}, spatial_dims=3, channels=1) == []
