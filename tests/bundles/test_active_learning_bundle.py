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

from monai_wsss.active import QueryStrategy

BUNDLE = os.path.join(REPO, "bundles", "geometric_active_learning")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
SMALL = {
    "num_epochs": 1,
    "epoch_length": 3,
    "roi_size": [32, 32, 3],
    "n_segments": 60,
    "regions_per_round": 4,
    "network_channels": [4, 8, 16],
    "plane_radius": 8.0,
    "plane_angles": [3, 8],
    "device": "cpu",
}


STRATEGIES = {
    "random": {"_target_": "monai_wsss.active.RandomStrategy"},
    "entropy": {"_target_": "monai_wsss.active.EntropyStrategy"},
    "geometric": {"_target_": "monai_wsss.active.GeometricStrategy", "geometric_weight": "@geometric_weight"},
    "geometric_plane": {
        "_target_": "monai_wsss.active.GeometricPlaneStrategy",
        "plane_radius": "@plane_radius",
        "plane_angles": "@plane_angles",
    },
}


def _run(tmp: str, dataset_dir: str, **kw) -> ConfigWorkflow:
    """Run train.json on tiny data; ``strategy`` may be a library strategy's name (its ``_target_`` is set)."""
    over = dict(SMALL, dataset_dir=dataset_dir, output_dir=os.path.join(tmp, "outputs"))
    if isinstance(kw.get("strategy"), str):
        kw["strategy"] = STRATEGIES[kw["strategy"]]
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
    for r in (0, 1):  # the engine's iterations of each round, recorded by the per-round learning-curve handler
        with open(os.path.join(tmp, "outputs", strategy, "training", f"round_{r:03d}.csv")) as f:
            assert len(list(csv.DictReader(f))) == SMALL["num_epochs"] * SMALL["epoch_length"]
    assert os.path.isfile(os.path.join(tmp, "outputs", strategy, "model.pt"))  # the checkpoint handler's file


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


class ToyStrategy(QueryStrategy):
    """A strategy that lives in this test module only: it always queries the ``size`` x ``size`` corner box (all
    slices) of the last pool case, and records the box in the query."""

    name = "toy"
    needs_probs = False

    def __init__(self, size: int = 6) -> None:
        super().__init__()
        self.size = size

    def score(self, probs, regions, image=None, key=None, rng=None):
        return np.zeros(int(regions.max()) + 1)

    def select_case(self, scores, rng):
        return len(scores) - 1

    def propose(self, regions, annotated, scores, voxels_per_round=None, regions_per_round=10, rng=None):
        mask = np.zeros(regions.shape, bool)
        mask[: self.size, : self.size] = True
        return {"mask": mask, "toy_box": self.size}


def test_toy_strategy_from_a_config_override_alone(tmp_path, tiny_tissue_dataset):
    """A strategy class defined here is picked by ``_target_`` (this module's dotted path) with no library edit, and
    its query is exactly what gets annotated (with the ground truth)."""
    from monai_wsss.data import load_semisupervised_datalist

    tmp = str(tmp_path)
    toy = {"_target_": f"{__name__}.ToyStrategy", "size": 6}
    _run(tmp, tiny_tissue_dataset, strategy=toy, num_rounds=1)
    before = _labels(tmp, "toy")
    _run(tmp, tiny_tissue_dataset, strategy=toy, num_rounds=2)
    rows, labels = _rows(tmp, "toy"), _labels(tmp, "toy")
    assert [int(r["round"]) for r in rows] == [0, 1] and all(r["strategy"] == "toy" for r in rows)
    pool = load_semisupervised_datalist(tiny_tissue_dataset, fully_labeled_fraction=None, val_fraction=0.0)["labeled"]
    last = os.path.basename(pool[-1]["image"]).split(".")[0]
    q0, q1 = _queries(tmp, "toy")
    assert q0["round"] == 0 and "toy_box" not in q0  # round 0 is the shared random seed query
    assert q1["round"] == 1 and q1["case"] == last and q1["toy_box"] == 6 and q1["strategy"] == "toy"
    truth = np.asarray(nib.load(pool[-1]["label"]).dataobj).astype(np.int16)
    box = np.zeros(truth.shape, bool)
    box[:6, :6] = True
    was = before[last] != -1
    np.testing.assert_array_equal(labels[last] != -1, was | box)  # the toy's box is what round 1 annotated
    np.testing.assert_array_equal(labels[last][box], truth[box])  # with the ground truth
    for case, lab in before.items():
        if case != last:
            np.testing.assert_array_equal(labels[case], lab)  # no other case changed
    assert q1["voxels"] == int((box & ~was).sum())
    assert int(rows[1]["annotated_voxels"]) - int(rows[0]["annotated_voxels"]) == q1["voxels"]


def test_metadata_and_paper_override():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=META, filepath=SCHEMA)
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "paper.json")])
    assert parser.get_parsed_content("strategy").name == "geometric_plane"
    assert parser.get_parsed_content("geometric_weight") == 1.0
    assert parser.get_parsed_content("strategy").geometric_weight == 1.0


def test_dice_weight_reaches_the_retraining_loss():
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "train.json"))
    assert parser.get_parsed_content("loss").dice_weight == 0.0  # default: cross-entropy on annotated voxels
    parser["dice_weight"] = 1.0
    loss = parser.get_parsed_content("loss", lazy=False)
    assert loss.dice_weight == 1.0 and loss.ce_weight == 1.0
    assert parser.get("train::trainer")["loss_function"] == "@loss"  # the loop's loss is its engine's


def test_the_loop_receives_the_engine_inferer_and_strategy_of_the_config():
    """The config builds the trainer, dataloader, crops and inferer and hands them to the loop; the keys follow the
    README vocabulary (schedule num_epochs x epoch_length, roi_size for crop and window, divisible_by)."""
    from monai.engines import SupervisedTrainer
    from monai.inferers import SlidingWindowInferer

    from monai_wsss.active import GeometricStrategy

    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "train.json"))
    config = parser.get()
    for old in ("num_iterations", "divisor", "patch_size"):
        assert old not in config
    loop = config["loop"]
    assert loop["trainer"] == "@train::trainer" and loop["inferer"] == "@inferer" and loop["strategy"] == "@strategy"
    assert loop["divisible_by"] == "@divisible_by"
    assert loop["warm_start"] == "$monai_wsss.settings.as_switch(@warm_start, 'warm_start')"  # true/false any case
    trainer = config["train"]["trainer"]
    assert trainer["max_epochs"] == "@num_epochs" and trainer["epoch_length"] == "@epoch_length"
    assert config["inferer"]["roi_size"] == "@roi_size"
    crop = config["train"]["preprocessing"]["transforms"][0]
    assert (
        crop["_target_"] == "RandWeightedCropd" and crop["w_key"] == "annotated" and crop["spatial_size"] == "@roi_size"
    )
    assert config["warm_start"] is False  # the documented default: retrain from scratch
    assert isinstance(parser.get_parsed_content("train::trainer"), SupervisedTrainer)
    assert isinstance(parser.get_parsed_content("inferer"), SlidingWindowInferer)
    assert isinstance(parser.get_parsed_content("strategy"), GeometricStrategy)
