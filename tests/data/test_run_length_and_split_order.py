from __future__ import annotations

import json
import os

import pytest

from monai_wsss.data import load_semisupervised_datalist, partition_labeled, run_length


def test_run_length_is_the_exact_product():
    assert run_length(16, 50) == 800
    assert run_length(10, 15) == 150
    assert run_length(1, 1) == 1


@pytest.mark.parametrize(
    "num_epochs, epoch_length, key",
    [(0, 15, "num_epochs"), (10, 0, "epoch_length"), (-1, 5, "num_epochs"), (2.5, 4, "num_epochs"),
     (2, "3", "epoch_length"), (True, 3, "num_epochs")],
)  # fmt: skip
def test_run_length_rejects_what_cannot_be_honoured(num_epochs, epoch_length, key):
    with pytest.raises(ValueError, match=f"`{key}` must be a positive integer"):
        run_length(num_epochs, epoch_length)


@pytest.fixture
def five_labelled(tmp_path) -> str:
    """Five labelled cases in a decathlon list (files are not read: validate=False)."""
    cases = [{"image": f"img{i}.nii.gz", "label": f"lbl{i}.nii.gz"} for i in range(5)]
    with open(os.path.join(tmp_path, "dataset.json"), "w") as f:
        json.dump({"training": cases}, f)
    return str(tmp_path)


def _names(items):
    return [os.path.basename(d["image"]) for d in items]


def test_ordered_split_labels_the_first_cases(five_labelled):
    out = load_semisupervised_datalist(
        five_labelled, num_labeled=2, val_fraction=0.2, split_order="ordered", validate=False
    )
    assert _names(out["labeled"]) == ["img0.nii.gz", "img1.nii.gz"]
    assert _names(out["unlabeled"]) == ["img2.nii.gz", "img3.nii.gz"]
    assert _names(out["validation"]) == ["img4.nii.gz"]  # hold-out from the end
    assert all("label" not in d for d in out["unlabeled"])


def test_seeded_split_is_the_shuffle_and_its_default(five_labelled):
    seeded = load_semisupervised_datalist(five_labelled, num_labeled=2, seed=1, split_order="seeded", validate=False)
    default = load_semisupervised_datalist(five_labelled, num_labeled=2, seed=1, validate=False)
    shuffled = load_semisupervised_datalist(five_labelled, num_labeled=2, seed=1, shuffle=True, validate=False)
    assert seeded == default == shuffled
    ordered = load_semisupervised_datalist(five_labelled, num_labeled=2, seed=1, shuffle=False, validate=False)
    assert ordered == load_semisupervised_datalist(five_labelled, num_labeled=2, split_order="ordered", validate=False)


def test_unknown_split_order_is_an_error(five_labelled):
    with pytest.raises(ValueError, match="`split_order` must be one of"):
        load_semisupervised_datalist(five_labelled, num_labeled=2, split_order="first", validate=False)
    with pytest.raises(ValueError, match="`split_order` must be one of"):
        partition_labeled([{"image": "a"}, {"image": "b"}], split_order="random")


def test_ordered_partition_deals_in_datalist_order():
    items = [{"image": str(i)} for i in range(4)]
    parts = partition_labeled(items, num_subsets=2, overlap=0.5, split_order="ordered")
    assert [[d["image"] for d in p] for p in parts] == [["0", "1", "2"], ["0", "1", "3"]]
