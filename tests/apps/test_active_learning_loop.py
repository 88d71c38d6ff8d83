"""ActiveLearningLoop on the real MNI152 tissue slabs (4 mm, conftest.py): mid-round resume, 2D fallback, checks."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from monai.networks.nets import UNet

from monai_wsss.apps.active_learning import ActiveLearningLoop
from monai_wsss.data import load_semisupervised_datalist
from monai_wsss.transforms import Supervoxels


def _lists(dataset_dir: str) -> dict:
    return load_semisupervised_datalist(dataset_dir, fully_labeled_fraction=None, val_fraction=0.0)


def _loop(out: str, pool, heldout, spatial_dims: int = 3, **kw) -> ActiveLearningLoop:
    strides = [[2, 2, 1], [2, 2, 1]] if spatial_dims == 3 else [2, 2]
    net = UNet(spatial_dims, 1, 3, channels=[4, 8, 16], strides=strides, num_res_units=1)
    args = {
        "num_classes": 3,
        "regions_per_round": 3,
        "num_iterations": 2,
        "supervoxels": Supervoxels(n_segments=40),
        "plane_radius": 6.0,
        "plane_angles": (3, 8),
        "divisor": [4, 4, 1] if spatial_dims == 3 else 4,
    }
    args.update(kw)
    return ActiveLearningLoop(net, pool, heldout, out, **args)


def test_kill_after_annotation_resumes_without_new_query(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    out = str(tmp_path)
    loop = _loop(out, lists["labeled"], lists["test"], strategy="geometric_plane")
    loop.run(2)
    csv_path = loop.curve_path
    with open(csv_path) as f:
        full = f.read().splitlines()
    # simulate a kill after round 1 was annotated but before its curve row was written
    with open(csv_path, "w") as f:
        f.write("\n".join(full[:2]) + "\n")
    state_root = os.path.join(out, "geometric_plane", "state")
    before = {c: json.load(open(os.path.join(state_root, c, "queries.json"))) for c in os.listdir(state_root)}
    rows = _loop(out, lists["labeled"], lists["test"], strategy="geometric_plane").run(2)
    after = {c: json.load(open(os.path.join(state_root, c, "queries.json"))) for c in os.listdir(state_root)}
    assert before == after  # round 1's recorded query is reused, not asked again
    assert [int(r["round"]) for r in rows] == [0, 1]
    assert int(rows[1]["annotated_voxels"]) == int(full[2].split(",")[4])


def test_2d_plane_strategy_falls_back_to_regions(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    cases = {}
    for role in ("labeled", "test"):
        cases[role] = []
        for i, c in enumerate(lists[role]):
            item = {}
            for key in ("image", "label"):
                img = nib.load(c[key])
                path = os.path.join(str(tmp_path), f"{role}{i}_{key}.nii.gz")
                nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 1], np.eye(4)), path)
                item[key] = path
            cases[role].append(item)
    loop = _loop(os.path.join(str(tmp_path), "out"), cases["labeled"], cases["test"], 2, strategy="geometric_plane")
    assert loop.spatial_dims == 2
    rows = loop.run(2)
    assert len(rows) == 2
    state_root = os.path.join(str(tmp_path), "out", "geometric_plane", "state")
    queries = [q for c in os.listdir(state_root) for q in json.load(open(os.path.join(state_root, c, "queries.json")))]
    assert all(q["plane"] is None and len(q["region_ids"]) == 3 for q in queries)


def test_invalid_arguments(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    with pytest.raises(ValueError, match="strategy|Unsupported option"):
        _loop(str(tmp_path), lists["labeled"], lists["test"], strategy="margin_of_error")
    with pytest.raises(ValueError, match="`heldout` is empty"):
        _loop(str(tmp_path), lists["labeled"], [], strategy="random")
    with pytest.raises(ValueError, match="no `label`"):
        _loop(str(tmp_path), lists["unlabeled"], lists["test"], strategy="random")


@pytest.mark.parametrize("strategy", ["random", "entropy", "geometric", "geometric_plane"])
def test_voxels_per_round_matches_the_budget(tmp_path, tiny_tissue_dataset, strategy):
    lists = _lists(tiny_tissue_dataset)
    budget = 60
    loop = _loop(str(tmp_path), lists["labeled"], lists["test"], strategy=strategy, voxels_per_round=budget)
    rows = loop.run(3)
    counts = [0] + [int(r["annotated_voxels"]) for r in rows]
    largest = max(int(np.bincount(loop.regions(c).ravel()).max()) for c in loop.pool)
    plane_size = (2 * loop.plane_radius + 1) ** 2  # a disc of radius r and thickness 1 holds fewer voxels
    for r, (before, after) in enumerate(zip(counts[:-1], counts[1:], strict=True)):
        # round 0 is a random region query for every strategy
        step = plane_size if strategy == "geometric_plane" and r > 0 else largest
        assert budget <= after - before < budget + step, (strategy, counts, step)
    queries = [
        q
        for c in loop.pool
        for q in json.load(open(os.path.join(str(tmp_path), strategy, "state", c["name"], "queries.json")))
    ]
    if strategy == "geometric_plane":
        assert all(len(q["planes"]) >= 1 for q in queries if q["round"] > 0)


def test_voxels_per_round_invalid(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    with pytest.raises(ValueError, match="voxels_per_round"):
        _loop(str(tmp_path), lists["labeled"], lists["test"], voxels_per_round=0)


def test_retraining_loss_and_per_class_dice(tmp_path, tiny_tissue_dataset):
    """A given loss is the one minimised; each curve row carries the Dice of every foreground class."""
    from monai_wsss.losses import PartialLabelLoss

    lists = _lists(tiny_tissue_dataset)
    calls = []

    class Recording(PartialLabelLoss):
        def forward(self, input, target, mask=None):
            calls.append(int((target != self.ignore_value).sum()))
            return super().forward(input, target, mask)

    loop = _loop(str(tmp_path), lists["labeled"], lists["test"], strategy="random", loss=Recording(dice_weight=1.0))
    rows = loop.run(1)
    assert len(calls) == loop.num_iterations and calls[0] == int(rows[0]["annotated_voxels"])
    per_class = [float(v) for v in rows[0]["dice_per_class"].split()]
    assert len(per_class) == 2  # grey and white matter; background is not scored
    dice, _, again = loop.evaluate()
    assert again == pytest.approx(per_class, abs=1e-6)
    assert dice == pytest.approx(float(rows[0]["dice"]), abs=1e-6)
    assert dice == pytest.approx(float(np.mean(per_class)), abs=1e-6)  # both classes in every held-out slab
    with pytest.raises(ValueError, match="ignore_value"):
        _loop(str(tmp_path), lists["labeled"], lists["test"], loss=PartialLabelLoss(ignore_value=255))
