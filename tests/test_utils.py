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
