"""End-to-end tests of bundles/weakly_supervised_seg on a subset of the real tagged nuclei tiles."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, exception_messages
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import LoadImage

from monai_wsss.data import load_semisupervised_datalist

BUNDLE = os.path.join(REPO, "bundles", "weakly_supervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
SMALL = {
    "roi_size": [32, 32],
    "model_name": "resnet10",
    "batch_size": 4,
    "advcam_steps": 1,
    "advcam_flip": False,
    "seeds::batch_size": 8,
    "panel_samples": 2,
    "segment::networks::plain::channels": [4, 8, 16],
    "segment::networks::plain::strides": [2, 2],
    "segment::batch_size": 4,
    "segment::num_epochs": 1,
    "segment::epoch_length": 2,
}

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


def _run(configs: list[str], tmp: str, **kw) -> ConfigWorkflow:
    files = [os.path.join(CONFIGS, c) for c in configs]
    parser = ConfigParser()
    parser.read_config(files)
    over = {k: v for k, v in SMALL.items() if k in parser}  # only keys these configs define
    over.update(kw)
    wf = ConfigWorkflow(config_file=files, meta_file=META, workflow_type="train", bundle_root=tmp, **over)
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def _metrics(path: str) -> dict[str, float]:
    with open(path) as f:
        return {row[0]: float(row[1]) for row in csv.reader(f) if row}


def test_classifier_seeds_segment(tmp_path, small_tagged):
    tmp = str(tmp_path)
    # classifier through the CLI
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "train_classifier.json")]
    cmd += ["--meta_file", META, "--bundle_root", tmp, "--dataset_dir", small_tagged, "--roi_size", "[32,32]"]
    cmd += ["--model_name", "resnet10", "--batch_size", "4", "--num_epochs", "2", "--epoch_length", "2"]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(f"{tmp}/models/model.pt", weights_only=True)
    assert "classifier.weight" in state and tuple(state["classifier.weight"].shape[:2]) == (1, 512)
    with open(f"{tmp}/outputs/classifier_learning_curve.csv") as f:
        assert len(list(csv.DictReader(f))) == 4

    load = LoadImage(image_only=True, ensure_channel_first=True)
    for method in ("cam", "advcam", "prm"):
        _run(["train_classifier.json", "make_seeds.json"], tmp, dataset_dir=small_tagged, seed_method=method)
        out = f"{tmp}/outputs/pseudo_labels_{method}"
        metrics = json.load(open(f"{out}/seed_metrics.json"))
        assert metrics["seed_method"] == method and metrics["num_images"] == 12 and metrics["num_positive"] == 8
        assert metrics["negatives_all_background"] is True and 0 <= metrics["seed_miou"] <= 1
        assert os.path.getsize(f"{tmp}/outputs/seeds_panel_{method}.png") > 0
        lists = load_semisupervised_datalist(out, fully_labeled_fraction=None, val_fraction=0.0)
        assert len(lists["labeled"]) == 12 and len(lists["test"]) == 4
        negatives = [i for i in lists["labeled"] if list(i["class_labels"]) == [0]]
        assert len(negatives) == 4 and all(not np.asarray(load(i["label"])).any() for i in negatives)

    # the pseudo-label folder trains the segmenter (the shared segment:: section) with one override; Dice / IoU on
    # the real test masks
    wf = _run(["segment.json"], tmp, dataset_dir=f"{tmp}/outputs/pseudo_labels_advcam")
    assert wf.parser.get_parsed_content("segment::trainer").state.iteration == 2
    m = _metrics(f"{tmp}/eval/segmenter_pseudo_labels_advcam/metrics.csv")
    assert set(m) >= {"dice", "jaccard", "miou"} and all(0.0 <= v <= 1.0 for v in m.values())
    assert os.path.isfile(f"{tmp}/models/segmenter_pseudo_labels_advcam/model.pt")
    with open(f"{tmp}/eval/segmenter_pseudo_labels_advcam/learning_curve.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_unknown_class_name_fails_clearly(tmp_path, small_tagged):
    meta = json.load(open(os.path.join(small_tagged, "dataset.json")))
    meta["training"][2]["class_labels"] = ["mitochondrion"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(Exception) as info:
        _run(["train_classifier.json"], str(tmp_path), dataset_dir=str(bad), num_epochs=1, epoch_length=1)
    chain = exception_messages(info.value)
    assert any("bad/dataset.json" in m and "['mitochondrion'] are not among the declared classes" in m for m in chain)


def test_paper_settings_and_metadata():
    from monai.bundle import verify_metadata

    parser = ConfigParser()
    files = ["train_classifier.json", "make_seeds.json", "paper.json"]
    parser.read_config([os.path.join(CONFIGS, f) for f in files])
    assert parser["advcam_steps"] == 27 and parser["advcam_step_size"] == 0.08
    assert parser["advcam_reg_weight"] == 7.0 and parser["advcam_mask_threshold"] == 0.5
    assert parser["advcam_scales"] == [1.0, 0.5, 1.5, 2.0] and parser["advcam_flip"] is True
    assert parser["output_stride"] == 16 and parser["model_name"] == "resnet50"
    default = ConfigParser()
    default.read_config([os.path.join(CONFIGS, f) for f in files[:2]])
    assert default["advcam_steps"] == 8 and default["seed_method"] == "advcam"
    verify_metadata(meta_file=META, filepath=SCHEMA)
