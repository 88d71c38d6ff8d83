"""Tests of the default microscopy data: stardist's real nuclei image cut into spatially disjoint train / test tiles."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage

import monai_wsss.data.default_data as default_data
import monai_wsss.data.microscopy as microscopy
from monai_wsss.data import NUCLEI_DATASET, build_nuclei_tiles_dataset, default_dataset_dir, validate_datalist

# third-party noise: MONAI's optional nvImageCodec DICOM plugin
pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


def _missing_sources() -> str | None:
    """Why stardist's sample image cannot be read here, or None."""
    try:
        folder = microscopy._stardist_images_dir()
    except FileNotFoundError as e:
        return str(e)
    missing = [f for f in ("img2d.tif", "mask2d.tif") if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return f"stardist's sample files are missing: {missing}"
    try:
        import tifffile  # noqa: F401
    except ImportError:
        return "tifffile is not installed"
    return None


needs_sources = pytest.mark.skipif(_missing_sources() is not None, reason=str(_missing_sources()))


def _source() -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    folder = microscopy._stardist_images_dir()
    return tifffile.imread(os.path.join(folder, "img2d.tif")), tifffile.imread(os.path.join(folder, "mask2d.tif"))


def _offsets(path: str) -> tuple[int, int]:
    stem = os.path.basename(path)[: -len(".png")]  # nuclei_r{row}_c{col}
    _, r, c = stem.split("_")
    return int(r[1:]), int(c[1:])


@pytest.fixture(scope="module")
def nuclei_dir(tmp_path_factory) -> str:
    if _missing_sources() is not None:
        pytest.skip(str(_missing_sources()))
    return build_nuclei_tiles_dataset(str(tmp_path_factory.mktemp("nuclei")))


@needs_sources
def test_tile_counts_and_disjoint_regions(nuclei_dir):
    with open(os.path.join(nuclei_dir, "dataset.json")) as f:
        meta = json.load(f)
    assert meta["numTraining"] == len(meta["training"]) == 12  # 512 x 384 training region in 128-pixel tiles
    assert meta["numTest"] == len(meta["test"]) == 4  # the right-most 128 columns
    assert meta["labels"] == {"0": "background", "1": "nucleus"}
    assert meta["tensorImageSize"] == "2D"
    assert "no scaling" in meta["description"]  # stardist's image (max 235) fits in uint8
    train_cols = {c + k for item in meta["training"] for c in [_offsets(item["image"])[1]] for k in range(128)}
    test_cols = {c + k for item in meta["test"] for c in [_offsets(item["image"])[1]] for k in range(128)}
    assert train_cols == set(range(384)) and test_cols == set(range(384, 512))
    names = [item["image"] for item in meta["training"] + meta["test"]]
    assert len(set(names)) == 16
    for item in meta["training"] + meta["test"]:
        assert item["label"] == item["image"].replace("images/", "masks/")


@needs_sources
def test_datalist_loads_and_validates(nuclei_dir):
    path = os.path.join(nuclei_dir, "dataset.json")
    items = load_decathlon_datalist(path, True, "training") + load_decathlon_datalist(path, True, "test")
    assert all(os.path.isfile(item["image"]) and os.path.isfile(item["label"]) for item in items)
    validate_datalist(items, label_values=[0, 1])
    loader = LoadImage(image_only=True)
    for item in items:
        img, lbl = loader(item["image"]), loader(item["label"])
        assert img.shape == lbl.shape == (128, 128)
        assert set(np.unique(np.asarray(lbl)).tolist()) <= {0, 1}


@needs_sources
def test_tiles_reassemble_to_the_source(nuclei_dir):
    """MONAI's PNG reader returns (W, H): transposed back, the tiles rebuild the image and the binary mask."""
    image, labels = _source()
    path = os.path.join(nuclei_dir, "dataset.json")
    items = load_decathlon_datalist(path, True, "training") + load_decathlon_datalist(path, True, "test")
    loader = LoadImage(image_only=True)
    img_full = np.full(image.shape, -1, np.int32)
    mask_full = np.full(image.shape, -1, np.int32)
    for item in items:
        r, c = _offsets(item["image"])
        img_full[r : r + 128, c : c + 128] = np.asarray(loader(item["image"])).T
        mask_full[r : r + 128, c : c + 128] = np.asarray(loader(item["label"])).T
    np.testing.assert_array_equal(mask_full, (labels > 0).astype(np.int32))
    np.testing.assert_array_equal(img_full, image.astype(np.int32))  # raw grey values
    assert 0.05 < mask_full.mean() < 0.5  # nuclei present, not everything


@needs_sources
def test_smaller_tiles_and_wider_test_region(tmp_path):
    out = build_nuclei_tiles_dataset(str(tmp_path), tile=100, test_columns=212)
    with open(os.path.join(out, "dataset.json")) as f:
        meta = json.load(f)
    # rows: 5 complete tiles of 100 in 512; train columns 0..299 -> 3, test columns 300..511 -> 2 (12 px dropped)
    assert (meta["numTraining"], meta["numTest"]) == (15, 10)
    assert {_offsets(i["image"])[1] for i in meta["test"]} == {300, 400}
    assert max(_offsets(i["image"])[1] for i in meta["training"]) + 100 <= 300


def test_missing_stardist_names_the_path(tmp_path, monkeypatch):
    missing = str(tmp_path / "no_stardist" / "data" / "images")
    monkeypatch.setattr(microscopy, "_stardist_images_dir", lambda: missing)
    with pytest.raises(FileNotFoundError, match="pip install stardist") as err:
        build_nuclei_tiles_dataset(str(tmp_path / "out"))
    assert missing in str(err.value)


@needs_sources
@pytest.mark.parametrize("tile, test_columns", [(128, 0), (128, 100), (128, 450), (0, 128)])
def test_bad_split_raises(tmp_path, tile, test_columns):
    with pytest.raises(ValueError):
        build_nuclei_tiles_dataset(str(tmp_path), tile=tile, test_columns=test_columns)


@needs_sources
def test_default_dataset_dir_builds_once(tmp_path, monkeypatch):
    calls = []

    def counting_builder(out_dir: str) -> str:
        calls.append(out_dir)
        return build_nuclei_tiles_dataset(out_dir)

    monkeypatch.setattr(default_data, "build_nuclei_tiles_dataset", counting_builder)
    first = default_dataset_dir(NUCLEI_DATASET, cache_dir=str(tmp_path))
    second = default_dataset_dir(NUCLEI_DATASET, cache_dir=str(tmp_path))
    assert first == second == os.path.join(str(tmp_path), NUCLEI_DATASET)
    assert len(calls) == 1
    assert os.path.isfile(os.path.join(first, "dataset.json"))
    assert len(os.listdir(os.path.join(first, "masks"))) == 16
    assert os.listdir(str(tmp_path)) == [NUCLEI_DATASET]  # the temporary build folder was renamed away
