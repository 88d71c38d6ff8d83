"""End-to-end tests of bundles/geometric_active_learning on the real MNI152 tissue slabs at 4 mm (conftest.py)."""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from monai.bundle import ConfigParser, ConfigWorkflow

BUNDLE = os.path.join(REPO, "bundles", "geometric_active_learning")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
SMALL = {
    "num_iterations": 3,
    "n_segments": 60,
    "regions_per_round": 4,
    "network_channels": [4, 8, 16],
    "plane_radius": 8.0,
    "plane_angles": [3, 8],
    "device": "cpu",
}


def _run(tmp: str, dataset_dir: str, **kw) -> ConfigWorkflow:
    over = dict(SMALL, dataset_dir=dataset_dir, output_dir=os.path.join(tmp, "outputs"))
    over.update(kw)
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        **over,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def _rows(tmp: str, strategy: str) -> list[dict]:
    with open(os.path.join(tmp, "outputs", f"learning_curve_{strategy}.csv")) as f:
        return list(csv.DictReader(f))


def _queries(tmp: str, strategy: str) -> list[dict]:
    root = os.path.join(tmp, "outputs", strategy, "state")
    out = []
    for case in sorted(os.listdir(root)):
        with open(os.path.join(root, case, "queries.json")) as f:
            out += json.load(f)
    return sorted(out, key=lambda q: q["round"])


def _labels(tmp: str, strategy: str) -> dict[str, np.ndarray]:
    root = os.path.join(tmp, "outputs", strategy, "state")
    return {c: np.asarray(nib.load(os.path.join(root, c, "labels.nii.gz")).dataobj) for c in sorted(os.listdir(root))}


@pytest.mark.parametrize("strategy", ["random", "entropy", "geometric", "geometric_plane"])
def test_two_rounds_per_strategy(tmp_path, tiny_tissue_dataset, strategy):
    tmp = str(tmp_path)
    _run(tmp, tiny_tissue_dataset, strategy=strategy, num_rounds=2)
    rows = _rows(tmp, strategy)
    assert [int(r["round"]) for r in rows] == [0, 1]
    n = [int(r["annotated_voxels"]) for r in rows]
    assert 0 < n[0] < n[1] and int(rows[1]["queried_voxels"]) == n[1] - n[0]
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0 and 0.0 <= float(r["iou"]) <= float(r["dice"]) + 1e-6
        per_class = [float(v) for v in r["dice_per_class"].split()]  # grey and white matter
        assert len(per_class) == 2 and float(r["dice"]) == pytest.approx(np.mean(per_class), abs=1e-5)
    queries = _queries(tmp, strategy)
    assert [q["round"] for q in queries] == [0, 1] and all(q["strategy"] == strategy for q in queries)
    # round 0 is the random seed shared by all strategies; round 1 is a plane only for geometric_plane
    assert queries[0]["plane"] is None and len(queries[0]["region_ids"]) == SMALL["regions_per_round"]
    if strategy == "geometric_plane":
        assert queries[1]["plane"] is not None and queries[1]["region_ids"] is None
        assert abs(np.linalg.norm(queries[1]["plane"]["normal"]) - 1) < 1e-6
    else:
        assert len(queries[1]["region_ids"]) == SMALL["regions_per_round"]
    labels = _labels(tmp, strategy)
    assert sum(int((v != -1).sum()) for v in labels.values()) == n[1]
    assert set(np.unique(np.concatenate([v.ravel() for v in labels.values()]))) <= {-1, 0, 1, 2}
    for name in (f"learning_curve_{strategy}.png", "learning_curves.png"):
        assert os.path.getsize(os.path.join(tmp, "outputs", name)) > 0


def test_resume_keeps_round_one_annotations(tmp_path, tiny_tissue_dataset):
    """A loop stopped after its first round continues at round 1 and keeps what was annotated before."""
    tmp = str(tmp_path)
    _run(tmp, tiny_tissue_dataset, strategy="geometric", num_rounds=1)
    first_rows, first_q, first_lab = _rows(tmp, "geometric"), _queries(tmp, "geometric"), _labels(tmp, "geometric")
    assert len(first_rows) == 1 and len(first_q) == 1
    _run(tmp, tiny_tissue_dataset, strategy="geometric", num_rounds=2)
    rows, queries, labels = _rows(tmp, "geometric"), _queries(tmp, "geometric"), _labels(tmp, "geometric")
    assert [int(r["round"]) for r in rows] == [0, 1] and rows[0] == first_rows[0]
    assert [q["round"] for q in queries] == [0, 1] and queries[0] == first_q[0]
    for case, lab in first_lab.items():
        kept = lab != -1
        np.testing.assert_array_equal(labels[case][kept], lab[kept])
    assert sum(int((v != -1).sum()) for v in labels.values()) > sum(int((v != -1).sum()) for v in first_lab.values())
    # a third run with the same number of rounds does nothing
    _run(tmp, tiny_tissue_dataset, strategy="geometric", num_rounds=2)
    assert _rows(tmp, "geometric") == rows and _queries(tmp, "geometric") == queries


def test_file_annotator_waits_reads_and_rejects_wrong_shape(tmp_path, tiny_tissue_dataset):
    tmp = str(tmp_path)
    label_dir = os.path.join(tmp, "person")
    os.makedirs(label_dir)
    kw = {"strategy": "entropy", "annotator": "file", "label_dir": label_dir, "num_rounds": 1}
    _run(tmp, tiny_tissue_dataset, **kw)  # no label file yet: the query mask is written and the loop stops
    qdir = os.path.join(tmp, "outputs", "entropy", "queries")
    (query,) = os.listdir(qdir)
    assert query.startswith("round_000_") and not os.path.isfile(
        os.path.join(tmp, "outputs", "learning_curve_entropy.csv")
    )
    mask = np.asarray(nib.load(os.path.join(qdir, query)).dataobj).astype(bool)
    assert mask.any()

    np.save(os.path.join(label_dir, query.replace(".nii.gz", ".npy")), np.zeros((5, 5, 3), np.int16))
    with pytest.raises(Exception) as err:
        _run(tmp, tiny_tissue_dataset, **kw)
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("has shape (5, 5, 3)" in m and f"{mask.shape}" in m for m in chain), chain
    assert not _queries(tmp, "entropy")  # nothing recorded from the bad file

    # the person's labels: grey matter everywhere they looked
    os.remove(os.path.join(label_dir, query.replace(".nii.gz", ".npy")))
    np.save(os.path.join(label_dir, query.replace(".nii.gz", ".npy")), np.ones(mask.shape, np.int16))
    _run(tmp, tiny_tissue_dataset, **kw)
    (q,) = _queries(tmp, "entropy")
    assert q["voxels"] == int(mask.sum())
    labels = _labels(tmp, "entropy")[q["case"]]
    assert (labels[mask] == 1).all() and (labels[~mask] == -1).all()
    assert len(_rows(tmp, "entropy")) == 1


def test_metadata_and_paper_override():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=META, filepath=SCHEMA)
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "paper.json")])
    assert parser.get_parsed_content("strategy") == "geometric_plane"
    assert parser.get_parsed_content("geometric_weight") == 1.0


def test_dice_weight_reaches_the_retraining_loss():
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "train.json"))
    assert parser.get_parsed_content("loss").dice_weight == 0.0  # default: cross-entropy on annotated voxels
    parser["dice_weight"] = 1.0
    loss = parser.get_parsed_content("loss", lazy=False)
    assert loss.dice_weight == 1.0 and loss.ce_weight == 1.0
    assert parser.get("loop")["loss"] == "@loss"
