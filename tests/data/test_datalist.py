"""Tests of ``load_semisupervised_datalist`` and ``split_labeled_unlabeled`` on small decathlon folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_wsss.data import DatasetError, load_semisupervised_datalist, split_labeled_unlabeled

# third-party noise: MONAI's optional nvImageCodec DICOM plugin and ITK's SWIG types
pytestmark = pytest.mark.filterwarnings(
    "ignore:NvImgCodecPydicomReader", "ignore:builtin type .* has no __module__ attribute:DeprecationWarning"
)

SHAPE = (8, 8, 4)
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
LABELS = {"0": "background", "1": "fg"}


def _write_nifti(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def _case(root: Path, name: str, labeled: bool = True, folder: str = "Tr") -> dict:
    """Write ``images<folder>/<name>.nii.gz`` (and a {0, 1} label) and return its datalist entry (relative paths)."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    item = {"image": f"images{folder}/{name}.nii.gz"}
    _write_nifti(root / item["image"], rng.random(SHAPE, dtype=np.float32))
    if labeled:
        item["label"] = f"labels{folder}/{name}.nii.gz"
        label = np.zeros(SHAPE, np.uint8)
        label[2:6, 2:6, 1:3] = 1
        _write_nifti(root / item["label"], label)
    return item


def _dataset(root: Path, labeled: int = 0, unlabeled_in_training: int = 0, **lists) -> Path:
    """A decathlon folder: ``case00..`` labelled and ``nolab00..`` unlabelled in "training", plus extra ``lists``."""
    training = [_case(root, f"case{i:02d}") for i in range(labeled)]
    training += [_case(root, f"nolab{i:02d}", labeled=False) for i in range(unlabeled_in_training)]
    meta = {"name": "Tiny", "labels": LABELS, "training": training, **lists}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _names(items: list[dict]) -> list[str]:
    return [os.path.basename(d["image"]).removesuffix(".nii.gz") for d in items]


CASES = [f"case{i:02d}" for i in range(10)]


def test_labeled_and_unlabeled_cases(tmp_path):
    root = _dataset(
        tmp_path,
        labeled=3,
        unlabeled_in_training=2,
        unlabeled=[_case(tmp_path, f"extra{i}", labeled=False) for i in range(2)],
    )
    out = load_semisupervised_datalist(str(root))
    assert sorted(out) == ["labeled", "test", "unlabeled", "validation"]
    # unlabelled cases exist: every label is kept, and there is no automatic hold-out
    assert _names(out["labeled"]) == ["case00", "case01", "case02"]
    assert _names(out["unlabeled"]) == ["nolab00", "nolab01", "extra0", "extra1"]
    assert out["validation"] == [] and out["test"] == []
    assert all("label" not in d for d in out["unlabeled"])
    # paths are resolved against the dataset folder
    assert out["labeled"][1] == {
        "image": str(tmp_path / "imagesTr" / "case01.nii.gz"),
        "label": str(tmp_path / "labelsTr" / "case01.nii.gz"),
    }
    assert out["unlabeled"][2] == {"image": str(tmp_path / "imagesTr" / "extra0.nii.gz")}


def test_null_label_is_unlabeled(tmp_path):
    root = _dataset(tmp_path, labeled=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append({"image": _case(root, "nullab", labeled=False)["image"], "label": None})
    (root / "dataset.json").write_text(json.dumps(meta))
    out = load_semisupervised_datalist(str(root))
    assert _names(out["labeled"]) == ["case00", "case01"]
    assert out["unlabeled"] == [{"image": str(root / "imagesTr" / "nullab.nii.gz")}]


@pytest.mark.parametrize("fully_labeled_fraction, n_labeled", [(None, 4), (0.2, 1), (0.5, 2)])
def test_explicit_validation_list_used_as_is(tmp_path, fully_labeled_fraction, n_labeled):
    validation = [_case(tmp_path, f"val{i}", folder="Va") for i in range(2)]
    root = _dataset(tmp_path, labeled=4, validation=validation)
    out = load_semisupervised_datalist(
        str(root), fully_labeled_fraction=fully_labeled_fraction, val_fraction=0.5, shuffle=False
    )
    assert out["validation"] == [
        {"image": str(root / "imagesVa" / f"val{i}.nii.gz"), "label": str(root / "labelsVa" / f"val{i}.nii.gz")}
        for i in range(2)
    ]
    # nothing is held out of "training": all four cases are either labelled or unlabelled
    assert _names(out["labeled"]) == CASES[:n_labeled]
    assert _names(out["unlabeled"]) == CASES[n_labeled:4]


@pytest.mark.parametrize(
    "n_cases, val_fraction, expected_validation",
    [
        (10, 0.2, ["case08", "case09"]),
        (10, 0.3, ["case07", "case08", "case09"]),
        (10, 0.04, ["case09"]),  # round(0.4) = 0, but at least one case is held out
        (3, 0.2, ["case02"]),
        (2, 0.5, []),  # fewer than three labelled cases: no hold-out
        (10, 0.0, []),  # disabled
    ],
)
def test_validation_hold_out_in_order(tmp_path, n_cases, val_fraction, expected_validation):
    root = _dataset(tmp_path, labeled=n_cases)
    out = load_semisupervised_datalist(str(root), val_fraction=val_fraction, fully_labeled_fraction=None, shuffle=False)
    assert _names(out["validation"]) == expected_validation
    assert _names(out["labeled"]) == CASES[: n_cases - len(expected_validation)]
    assert out["unlabeled"] == []
    assert all("label" in d for d in out["validation"])


def test_seeded_hold_out_and_split(tmp_path):
    root = _dataset(tmp_path, labeled=10)
    out = load_semisupervised_datalist(str(root), seed=0)
    # np.random.RandomState(0).permutation(10) = [2 8 4 9 1 6 7 3 0 5]: the last two (0, 5) are held out;
    # RandomState(0).permutation(8) = [6 2 ...] keeps positions 2 and 6 of the 8 remaining cases (round(0.2 * 8) = 2)
    assert _names(out["validation"]) == ["case00", "case05"]
    assert _names(out["labeled"]) == ["case03", "case08"]
    assert _names(out["unlabeled"]) == ["case01", "case02", "case04", "case06", "case07", "case09"]

    again = load_semisupervised_datalist(str(root), seed=0)
    assert again == out
    other = load_semisupervised_datalist(str(root), seed=1)
    assert _names(other["validation"]) == ["case05", "case08"]
    assert other["validation"] != out["validation"]

    for split in (out, other):
        names = [_names(split[k]) for k in ("labeled", "unlabeled", "validation")]
        flat = [n for group in names for n in group]
        assert len(flat) == len(set(flat)), "a case appears in two lists"
        assert sorted(flat) == CASES


@pytest.mark.parametrize(
    "kwargs, n_labeled",
    [
        ({"num_labeled": 3}, 3),
        ({"num_labeled": 10}, 10),
        ({"labeled_fraction": 0.3}, 3),
        ({"labeled_fraction": 0.36}, 4),  # round(3.6)
        ({"labeled_fraction": 0.01}, 1),  # at least one
        ({"labeled_fraction": 1.0}, 10),
    ],
)
@pytest.mark.parametrize("shuffle", [True, False])
def test_num_labeled_and_labeled_fraction(tmp_path, kwargs, n_labeled, shuffle):
    root = _dataset(tmp_path, labeled=10)
    out = load_semisupervised_datalist(str(root), val_fraction=0.0, shuffle=shuffle, seed=3, **kwargs)
    assert len(out["labeled"]) == n_labeled
    assert len(out["unlabeled"]) == 10 - n_labeled
    assert all("label" in d for d in out["labeled"])
    assert all(set(d) == {"image"} for d in out["unlabeled"])
    assert sorted(_names(out["labeled"]) + _names(out["unlabeled"])) == CASES
    if not shuffle:
        assert _names(out["labeled"]) == CASES[:n_labeled]


@pytest.mark.parametrize(
    "n_unlabeled, kwargs, n_labeled",
    [
        (0, {}, 2),  # default fully_labeled_fraction=0.2 of 10
        (0, {"fully_labeled_fraction": 0.5}, 5),
        (0, {"fully_labeled_fraction": None}, 10),
        (0, {"num_labeled": 4}, 4),  # an explicit count wins
        (0, {"labeled_fraction": 0.7}, 7),
        (1, {}, 10),  # the set already has an unlabelled case: the default fraction is not applied
        (1, {"fully_labeled_fraction": 0.5}, 10),
        (1, {"num_labeled": 4}, 4),
    ],
)
def test_fully_labeled_fraction(tmp_path, n_unlabeled, kwargs, n_labeled):
    root = _dataset(tmp_path, labeled=10, unlabeled_in_training=n_unlabeled)
    out = load_semisupervised_datalist(str(root), val_fraction=0.0, **kwargs)
    assert len(out["labeled"]) == n_labeled
    assert len(out["unlabeled"]) == 10 + n_unlabeled - n_labeled
    assert ("nolab00" in _names(out["unlabeled"])) == bool(n_unlabeled)


def test_shuffle_false_follows_datalist_order(tmp_path):
    root = _dataset(tmp_path, labeled=10)
    out = load_semisupervised_datalist(str(root), shuffle=False)
    assert _names(out["validation"]) == ["case08", "case09"]  # round(0.2 * 10) from the end
    assert _names(out["labeled"]) == ["case00", "case01"]  # round(0.2 * 8) from the start
    assert _names(out["unlabeled"]) == CASES[2:8]


def test_num_labeled_and_labeled_fraction_are_exclusive(tmp_path):
    root = _dataset(tmp_path, labeled=4)
    with pytest.raises(ValueError, match="num_labeled.*labeled_fraction"):
        load_semisupervised_datalist(str(root), num_labeled=2, labeled_fraction=0.5)


@pytest.mark.parametrize(
    "kwargs", [{"num_labeled": 0}, {"num_labeled": 5}, {"labeled_fraction": 0.0}, {"labeled_fraction": 1.5}]
)
def test_out_of_range_labeled_count_raises(tmp_path, kwargs):
    root = _dataset(tmp_path, labeled=4)
    with pytest.raises(ValueError, match="num_labeled|labeled_fraction"):
        load_semisupervised_datalist(str(root), val_fraction=0.0, **kwargs)


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0])
def test_bad_val_fraction_raises(tmp_path, val_fraction):
    root = _dataset(tmp_path, labeled=4)
    with pytest.raises(ValueError, match="val_fraction"):
        load_semisupervised_datalist(str(root), val_fraction=val_fraction)


def test_test_list_of_strings(tmp_path):
    test = [_case(tmp_path, f"ts{i}", labeled=False, folder="Ts")["image"] for i in range(2)]
    root = _dataset(tmp_path, labeled=2, test=test)
    out = load_semisupervised_datalist(str(root))
    assert out["test"] == [{"image": str(root / "imagesTs" / f"ts{i}.nii.gz")} for i in range(2)]


def test_test_list_of_dicts(tmp_path):
    test = [_case(tmp_path, "ts0", folder="Ts"), _case(tmp_path, "ts1", labeled=False, folder="Ts")]
    root = _dataset(tmp_path, labeled=2, test=test)
    out = load_semisupervised_datalist(str(root))
    assert out["test"] == [
        {"image": str(root / "imagesTs" / "ts0.nii.gz"), "label": str(root / "labelsTs" / "ts0.nii.gz")},
        {"image": str(root / "imagesTs" / "ts1.nii.gz")},
    ]
    # test cases never enter training
    assert "ts0" not in _names(out["labeled"] + out["unlabeled"] + out["validation"])


def test_custom_datalist_file(tmp_path):
    root = _dataset(tmp_path, labeled=2)
    os.rename(root / "dataset.json", root / "split_a.json")
    by_name = load_semisupervised_datalist(str(root), datalist="split_a.json", fully_labeled_fraction=None)
    by_path = load_semisupervised_datalist(str(root), datalist=str(root / "split_a.json"), fully_labeled_fraction=None)
    assert _names(by_name["labeled"]) == _names(by_path["labeled"]) == ["case00", "case01"]


def test_missing_folder(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_semisupervised_datalist(missing)
    assert missing in str(err.value)


def test_missing_datalist(tmp_path):
    with pytest.raises(DatasetError, match="not found") as err:
        load_semisupervised_datalist(str(tmp_path))
    assert str(tmp_path / "dataset.json") in str(err.value)


def test_missing_training_key(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x", "test": []}))
    with pytest.raises(DatasetError, match="no 'training' list") as err:
        load_semisupervised_datalist(str(tmp_path))
    assert str(tmp_path / "dataset.json") in str(err.value)
    assert "['name', 'test']" in str(err.value)


def test_invalid_json(tmp_path):
    (tmp_path / "dataset.json").write_text('{"training": [')
    with pytest.raises(DatasetError, match="not a readable JSON") as err:
        load_semisupervised_datalist(str(tmp_path))
    assert str(tmp_path / "dataset.json") in str(err.value)


def test_no_labeled_case(tmp_path):
    root = _dataset(tmp_path, unlabeled_in_training=2)
    with pytest.raises(DatasetError, match="no labelled case") as err:
        load_semisupervised_datalist(str(root))
    assert str(root / "dataset.json") in str(err.value)


def test_files_are_validated_against_declared_labels(tmp_path):
    root = _dataset(tmp_path, labeled=3, unlabeled_in_training=1)
    bad = np.zeros(SHAPE, np.uint8)
    bad[0, 0, 0] = 2
    _write_nifti(root / "labelsTr" / "case01.nii.gz", bad)
    with pytest.raises(DatasetError) as err:
        load_semisupervised_datalist(str(root))
    assert str(root / "labelsTr" / "case01.nii.gz") in str(err.value)
    assert "[2]" in str(err.value)
    # the declared labels can be overridden, and validation can be skipped
    assert len(load_semisupervised_datalist(str(root), label_values=[0, 1, 2])["labeled"]) == 3
    os.remove(root / "imagesTr" / "case02.nii.gz")
    assert len(load_semisupervised_datalist(str(root), validate=False)["labeled"]) == 3
    with pytest.raises(DatasetError, match="file not found"):
        load_semisupervised_datalist(str(root), label_values=[0, 1, 2])


def test_split_labeled_unlabeled_in_order():
    items = [{"image": f"i{k}", "label": f"l{k}", "id": k} for k in range(5)]
    labeled, unlabeled = split_labeled_unlabeled(items, num_labeled=2, shuffle=False)
    assert labeled == items[:2]
    assert unlabeled == [{"image": f"i{k}", "id": k} for k in range(2, 5)]
    assert all("label" in d for d in items), "the input items must not be modified"


def test_split_labeled_unlabeled_seeded():
    items = [{"image": f"i{k}", "label": f"l{k}"} for k in range(10)]
    labeled, unlabeled = split_labeled_unlabeled(items, labeled_fraction=0.3, seed=0)
    # RandomState(0).permutation(10) starts [2 8 4]; both lists keep datalist order
    assert [d["image"] for d in labeled] == ["i2", "i4", "i8"]
    assert [d["image"] for d in unlabeled] == ["i0", "i1", "i3", "i5", "i6", "i7", "i9"]
    assert split_labeled_unlabeled(items, labeled_fraction=0.3, seed=0) == (labeled, unlabeled)
    assert split_labeled_unlabeled(items, labeled_fraction=0.3, seed=1)[0] != labeled


def test_split_labeled_unlabeled_defaults_and_errors():
    items = [{"image": "a", "seg": "x"}, {"image": "b", "seg": "y"}]
    assert split_labeled_unlabeled(items) == (items, [])
    assert split_labeled_unlabeled(items, num_labeled=1, shuffle=False, label_key="seg") == (
        [items[0]],
        [{"image": "b"}],
    )
    with pytest.raises(ValueError, match="Incompatible values"):
        split_labeled_unlabeled(items, num_labeled=1, labeled_fraction=0.5)


def test_load_test_datalist_keeps_labelled_test_cases(tmp_path):
    from monai_wsss.data import load_test_datalist

    test = [_case(tmp_path, "t0", folder="Ts"), _case(tmp_path, "t1", labeled=False, folder="Ts")]
    root = _dataset(tmp_path, labeled=3, test=test)
    items = load_test_datalist(str(root))
    assert _names(items) == ["t0"]
    assert items[0]["label"] == os.path.join(str(root), "labelsTs/t0.nii.gz")


def test_load_test_datalist_without_test_list_is_a_clear_error(tmp_path):
    from monai_wsss.data import load_test_datalist

    root = _dataset(tmp_path, labeled=3)
    with pytest.raises(DatasetError, match=r"dataset\.json: no labelled case in a 'test' list"):
        load_test_datalist(str(root))


def test_load_test_datalist_validates_labels(tmp_path):
    from monai_wsss.data import load_test_datalist

    test = [_case(tmp_path, "t0", folder="Ts")]
    bad = np.zeros(SHAPE, np.uint8)
    bad[0, 0, 0] = 5
    _write_nifti(tmp_path / "labelsTs/t0.nii.gz", bad)
    root = _dataset(tmp_path, labeled=3, test=test)
    with pytest.raises(DatasetError, match=r"t0\.nii\.gz: label values \[5\]"):
        load_test_datalist(str(root))
