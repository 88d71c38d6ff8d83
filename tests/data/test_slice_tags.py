"""build_slice_tag_dataset: tags from real masks (ROBEX brain scan, 6 mm), negatives, a case-wise test split, the CLI
and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from monai_wsss.data import DatasetError, build_slice_tag_dataset, load_tagged_datalist, tag_classes


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, robex_small):
    """Three real labelled cases (the ROBEX scan, its mirror, and a shifted copy) in a decathlon folder."""
    img, msk, aff = robex_small
    root = tmp_path_factory.mktemp("labelled")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    cases = {"a": (img, msk), "b": (img[::-1], msk[::-1]), "c": (np.roll(img, 3, 0), np.roll(msk, 3, 0))}
    for name, (i, m) in cases.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(i), aff), str(root / "imagesTr" / f"{name}.nii.gz"))
        nib.save(
            nib.Nifti1Image(np.ascontiguousarray(m).astype(np.uint8), aff), str(root / "labelsTr" / f"{name}.nii.gz")
        )
    meta = {
        "labels": {"0": "background", "1": "brain"},
        "training": [{"image": f"imagesTr/{n}.nii.gz", "label": f"labelsTr/{n}.nii.gz"} for n in cases],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return str(root), msk


def test_tag_classes_counts_pixels():
    mask = np.array([[0, 1, 1], [2, 2, 2]])
    assert tag_classes(mask, num_classes=3, min_pixels=3) == [0, 1]
    assert tag_classes(mask, num_classes=3, min_pixels=2) == [1, 1]
    assert tag_classes(np.zeros((2, 2)), num_classes=2, min_pixels=1) == [0]


def test_slices_are_tagged_from_their_masks_with_negatives(tmp_path, labelled_folder):
    source, mask = labelled_folder
    out = build_slice_tag_dataset(source, str(tmp_path / "tags"), min_pixels=30, axis=2, num_test=1)
    meta = json.load(open(os.path.join(out, "dataset.json")))
    assert meta["classes"] == ["brain"]
    depth = mask.shape[2]
    assert len(meta["training"]) == 2 * depth and len(meta["test"]) == depth
    assert {i["case"] for i in meta["test"]} == {"c"} and "c" not in {i["case"] for i in meta["training"]}
    for item in meta["training"][:depth]:  # case "a": the tag is the slice's own pixel count of the real mask
        s = int(item["image"].rsplit("_s", 1)[1][:3])
        assert item["class_labels"] == [int((mask[:, :, s] > 0).sum() >= 30)]
        saved = np.asarray(nib.load(os.path.join(out, item["label"])).dataobj)
        assert np.array_equal(saved, mask[:, :, s].astype(np.uint8))
    tags = [i["class_labels"][0] for i in meta["training"]]
    assert 0 < sum(tags) < len(tags)  # real positives and real negatives
    loaded = load_tagged_datalist(out)  # the library's own reader accepts it, images as 2D
    assert len(loaded["training"]) == 2 * depth
    assert nib.load(loaded["training"][0]["image"]).ndim == 2


def test_volume_mode_and_cli(tmp_path, labelled_folder):
    source, _ = labelled_folder
    out = str(tmp_path / "volumes")
    cmd = [sys.executable, "-m", "monai_wsss.data.slice_tags", "--source", source, "--output", out]
    proc = subprocess.run(cmd + ["--mode", "volumes", "--num_test", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.load(open(os.path.join(out, "dataset.json")))
    assert [i["class_labels"] for i in meta["training"] + meta["test"]] == [[1], [1], [1]]
    assert meta["tagging"]["counts"]["test"] == {"images": 1, "positive": 1}


def test_bad_sources_are_refused(tmp_path, labelled_folder):
    source, _ = labelled_folder
    with pytest.raises(DatasetError, match="too few"):
        build_slice_tag_dataset(source, str(tmp_path / "x"), num_test=3)
    meta = json.load(open(os.path.join(source, "dataset.json")))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "dataset.json").write_text(json.dumps({"training": meta["training"]}))
    with pytest.raises(DatasetError, match="labels"):
        build_slice_tag_dataset(str(bare), str(tmp_path / "y"))
    with pytest.raises(ValueError, match="min_pixels"):
        build_slice_tag_dataset(source, str(tmp_path / "z"), min_pixels=0)


def test_slice_step_keeps_every_kth_slice(tmp_path, labelled_folder):
    source, mask = labelled_folder
    depth = mask.shape[2]
    out = build_slice_tag_dataset(source, str(tmp_path / "step"), min_pixels=30, num_test=1, slice_step=3)
    meta = json.load(open(os.path.join(out, "dataset.json")))
    kept = list(range(0, depth, 3))  # slices 0, 3, 6, ... of each case: ceil(depth / 3) per case
    assert len(kept) == -(-depth // 3)
    assert len(meta["training"]) == 2 * len(kept) and len(meta["test"]) == len(kept)
    case_a = [i for i in meta["training"] if i["case"] == "a"]
    assert [int(i["image"].rsplit("_s", 1)[1][:3]) for i in case_a] == kept
    for item, s in zip(case_a, kept, strict=True):
        assert item["class_labels"] == [int((mask[:, :, s] > 0).sum() >= 30)]
    assert meta["tagging"]["slice_step"] == 3
    cli = str(tmp_path / "cli")
    cmd = [sys.executable, "-m", "monai_wsss.data.slice_tags", "--source", source, "--output", cli]
    proc = subprocess.run(cmd + ["--num_test", "1", "--slice_step", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.load(open(os.path.join(cli, "dataset.json")))["test"]) == len(kept)
    with pytest.raises(ValueError, match="slice_step"):
        build_slice_tag_dataset(source, str(tmp_path / "bad"), slice_step=0)
