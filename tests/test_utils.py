"""Atomic writes: a failed write leaves the old file and no temporary; a folder is replaced whole."""

from __future__ import annotations

import os

import pytest

from monai_wsss.utils import atomic_path, replace_directory


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "scan.nii.gz"
    with atomic_path(str(target)) as tmp:
        assert tmp.endswith(".nii.gz") and os.path.dirname(tmp) == str(target.parent)
        with open(tmp, "w") as f:
            f.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "first"
    assert sorted(os.listdir(target.parent)) == ["scan.nii.gz"]


def test_replace_directory(tmp_path):
    dest, new = tmp_path / "out", tmp_path / ".out-tmp"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_directory(str(new), str(dest))
    assert sorted(os.listdir(dest)) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_writers_take_path_first_and_read_back(tmp_path):
    import csv
    import json

    import nibabel as nib
    import numpy as np
    import torch

    from monai_wsss.utils import (
        atomic_write_csv,
        atomic_write_datalist,
        atomic_write_json,
        atomic_write_nifti,
        atomic_write_torch,
    )

    atomic_write_json(str(tmp_path / "a.json"), {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    atomic_write_datalist(str(tmp_path / "d" / "dataset.json"), {"labels": {"0": "bg"}, "training": [{"image": "i"}]})
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["training"] == [{"image": "i"}]
    atomic_write_torch(str(tmp_path / "m.pt"), {"w": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "m.pt", weights_only=True)["w"], torch.arange(3))
    atomic_write_csv(str(tmp_path / "c.csv"), [{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    with open(tmp_path / "c.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{"a": "1", "b": "2", "c": ""}, {"a": "3", "b": "", "c": "4"}]
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    atomic_write_nifti(str(tmp_path / "v.nii.gz"), arr, np.diag([2.0, 2.0, 2.0, 1.0]))
    img = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(np.asarray(img.dataobj), arr)
    np.testing.assert_array_equal(img.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "c.csv", "d", "m.pt", "v.nii.gz"]


def test_datalist_writer_rejects_a_malformed_list_and_keeps_the_old_file(tmp_path):
    from monai_wsss.utils import atomic_write_datalist

    path = str(tmp_path / "dataset.json")
    atomic_write_datalist(path, {"training": []})
    with pytest.raises(TypeError, match="dataset.json.*'training'"):
        atomic_write_datalist(path, {"training": "imagesTr/a.nii.gz"})
    assert (tmp_path / "dataset.json").read_text().strip() == '{\n  "training": []\n}'


def test_to_jsonable_turns_evaluator_tensors_into_numbers(tmp_path):
    import json

    import numpy as np
    import torch

    from monai_wsss.utils import atomic_write_json, to_jsonable

    metrics = {"dice": 0.5, "dice_per_class": torch.tensor([0.25, 0.75]), "n": np.int64(3), "t": (torch.tensor(2.0),)}
    out = to_jsonable(metrics)
    assert out == {"dice": 0.5, "dice_per_class": [0.25, 0.75], "n": 3, "t": [2.0]}
    atomic_write_json(str(tmp_path / "m.json"), out)
    assert json.loads((tmp_path / "m.json").read_text())["dice_per_class"] == [0.25, 0.75]
