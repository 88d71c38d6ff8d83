"""The runner behind the Slicer module (``python -m monai_wsss.apps.slicer``): a real bundle inference on a tiny image
in a subprocess with the Slicer overrides, and one active-learning session (query, save-label, train, curve) on the
tiny real tissue slabs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from monai_wsss.apps.slicer import ActiveLearningSession, bundle_segments, main, strategy_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLES = os.path.join(REPO, "bundles")
AL = os.path.join(BUNDLES, "geometric_active_learning")
SMALL = {
    "num_epochs": 1,
    "epoch_length": 2,
    "roi_size": [32, 32, 3],
    "n_segments": 40,
    "regions_per_round": 3,
    "network_channels": [4, 8, 16],
    "plane_radius": 6.0,
    "plane_angles": [2, 4],
}


def _runner(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "monai_wsss.apps.slicer", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)


@pytest.fixture
def dtc_bundle(tmp_path) -> str:
    """The DTC bundle's configs with untrained weights of its network at models/model.pt (as training writes)."""
    root = tmp_path / "dtc"
    shutil.copytree(os.path.join(BUNDLES, "dtc_semisupervised_seg", "configs"), root / "configs")
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    os.makedirs(root / "models")
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    return str(root)


def test_infer_in_a_subprocess_writes_segmentation_and_segment_names(tmp_path, dtc_bundle, tiny_brain_dataset):
    image = os.path.join(tiny_brain_dataset, "imagesTr", "mni152.nii.gz")
    out = tmp_path / "out"
    proc = _runner("infer", "--bundle", dtc_bundle, "--image", image, "--output", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == json.load(open(out / "segmentation.json"))
    assert result["segments"] == [{"value": 1, "name": "foreground"}]
    seg, ref = nib.load(result["segmentation"]), nib.load(image)
    assert os.path.dirname(result["segmentation"]) == str(out)
    assert seg.shape[:3] == ref.shape[:3] and np.allclose(seg.affine, ref.affine, atol=1e-4)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}


def test_infer_errors_name_the_file(tmp_path, dtc_bundle, capsys):
    missing = tmp_path / "nope.nii.gz"
    assert main(["infer", "--bundle", dtc_bundle, "--image", str(missing), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such image file."
    os.remove(os.path.join(dtc_bundle, "configs", "inference.json"))
    assert main(["infer", "--bundle", dtc_bundle, "--image", __file__, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {os.path.join(dtc_bundle, 'configs', 'inference.json')}: missing; {dtc_bundle} is not a " \
        "bundle with configs/inference.json."


def test_bundle_segments_from_channel_def():
    assert bundle_segments(os.path.join(BUNDLES, "cotraining_semisupervised_seg")) == [
        {"value": 1, "name": "grey matter"},
        {"value": 2, "name": "white matter"},
    ]
    assert bundle_segments(os.path.join(BUNDLES, "dtc_semisupervised_seg")) == [{"value": 1, "name": "foreground"}]


def _label_of(dataset_dir: str, case: str) -> str:
    meta = json.load(open(os.path.join(dataset_dir, "dataset.json")))
    for item in meta["training"]:
        if os.path.basename(item["image"]).split(".")[0] == case:
            return os.path.join(dataset_dir, item["label"])
    raise AssertionError(f"no label for {case}")


def _al(capsys, *args: str) -> tuple[int, dict | str]:
    rc = main(["al", *args])
    out = capsys.readouterr()
    return rc, (json.loads(out.out.strip().splitlines()[-1]) if rc == 0 else out.err.strip())


def test_active_learning_session_query_label_train_curve(tmp_path, tiny_tissue_dataset, capsys):
    work = str(tmp_path / "session")
    common = ["--bundle", AL, "--dataset_dir", tiny_tissue_dataset, "--work_dir", work, "--strategy", "geometric_plane"]
    common += [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]
    rc, err = _al(capsys, "train", *common)
    assert rc == 2 and err == "error: no pending query: run `query` first."

    rc, q = _al(capsys, "query", *common)  # round 0: the loop's random seed query (supervoxels)
    assert rc == 0 and q["round"] == 0 and q["voxels"] > 0 and q["region_ids"]
    mask = np.asarray(nib.load(q["query_mask"]).dataobj).astype(bool)
    assert int(mask.sum()) == q["voxels"] and q["image"].startswith(tiny_tissue_dataset)
    rc, err = _al(capsys, "train", *common)
    assert rc == 2 and "is not saved" in err and q["label_path"] in err

    # the person paints the queried region (here: the ground truth) and saves it; a wrong shape is refused
    truth = nib.load(_label_of(tiny_tissue_dataset, q["case"]))
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), bad)
    rc, err = _al(capsys, "save-label", *common, "--label", str(bad))
    assert rc == 2 and str(bad) in err and "shape" in err
    painted = tmp_path / "painted.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(truth.dataobj).astype(np.int16), truth.affine), painted)
    rc, saved = _al(capsys, "save-label", *common, "--label", str(painted))
    assert rc == 0 and saved["query_voxels"] == q["voxels"] and sum(saved["counts"].values()) == q["voxels"]
    stored = np.asarray(nib.load(q["label_path"]).dataobj)
    assert (stored[~mask] == -1).all() and (stored[mask] == np.asarray(truth.dataobj)[mask]).all()

    rc, trained = _al(capsys, "train", *common)  # one retraining round on the label, then the held-out evaluation
    assert rc == 0 and trained["trained"] and len(trained["rows"]) == 1 and os.path.isfile(trained["png"])
    assert 0.0 <= float(trained["rows"][0]["dice"]) <= 1.0 and int(trained["rows"][0]["annotated_voxels"]) > 0

    rc, q1 = _al(capsys, "query", *common)  # round 1: the strategy's planar patch, with its plane for Slicer
    assert rc == 0 and q1["round"] == 1 and q1["strategy"] == "geometric_plane" and q1["plane"] is not None
    normal = np.asarray(q1["plane_ras"]["normal"])
    assert np.isclose(np.linalg.norm(normal), 1.0) and len(q1["plane_ras"]["center"]) == 3
    m1 = np.asarray(nib.load(q1["query_mask"]).dataobj).astype(bool)
    assert int(m1.sum()) == q1["voxels"] > 0 and not (m1 & mask).any()  # nothing annotated is asked again

    rc, curve = _al(capsys, "curve", *common)
    assert rc == 0 and curve["csv"].endswith("learning_curve_geometric_plane.csv") and len(curve["rows"]) == 1


def test_session_rejects_unknown_strategy_and_missing_folder(tmp_path, tiny_tissue_dataset):
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        ActiveLearningSession(AL, tiny_tissue_dataset, str(tmp_path), strategy="best")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        ActiveLearningSession(AL, str(tmp_path), str(tmp_path))


def test_strategy_config_wires_the_bundle_keys():
    keys = {"plane_radius", "plane_angles", "geometric_weight", "num_epochs"}
    assert strategy_config("geometric_plane", keys) == {
        "_target_": "monai_wsss.active.strategies.GeometricPlaneStrategy",
        "plane_radius": "@plane_radius",
        "plane_angles": "@plane_angles",
        "geometric_weight": "@geometric_weight",
    }
    assert strategy_config("entropy", keys) == {"_target_": "monai_wsss.active.strategies.EntropyStrategy"}
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        strategy_config("best", keys)
