"""The group-wise and MCOF seed methods of bundles/weakly_supervised_seg, end to end on a subset of the real
tagged nuclei tiles: group-wise classifier training (train_groupwise.json), seeds through ``python -m monai.bundle
run`` (``--seed_method groupwise``), MCOF rounds (``--seed_method mcof``), the paper schedule, and a tag outside the
declared classes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, exception_messages
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_wsss.apps import MCOFSeeds
from monai_wsss.attribution import GroupwiseSeeds
from monai_wsss.handlers import load_accumulated_maps

CONFIGS = os.path.join(REPO, "bundles", "weakly_supervised_seg", "configs")
META = os.path.join(CONFIGS, "metadata.json")
CLASSIFIER = ["train_classifier.json"]
GROUPWISE = ["train_classifier.json", "train_groupwise.json"]
SEEDS = ["train_classifier.json", "make_seeds.json"]
SMALL = {
    "roi_size": [32, 32],
    "model_name": "resnet10",
    "advcam_steps": 1,
    "advcam_flip": False,
    "panel_samples": 2,
    "mcof::num_rounds": 1,
    "mcof::n_segments": 16,
    "mcof::region_epochs": 5,
    "mcof::segmenter::num_epochs": 1,
    "mcof::segmenter::epoch_length": 2,
    "mcof::segmenter::batch_size": 4,
}

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


def _files(configs):
    return [os.path.join(CONFIGS, c) for c in configs]


def _workflow(configs: list[str], tmp: str, **kw) -> ConfigWorkflow:
    parser = ConfigParser()
    parser.read_config(_files(configs))
    over = {k: v for k, v in SMALL.items() if k in parser}
    over.update(kw)
    wf = ConfigWorkflow(config_file=_files(configs), meta_file=META, workflow_type="train", bundle_root=tmp, **over)
    wf.initialize()
    return wf


def _run(configs: list[str], tmp: str, **kw) -> ConfigWorkflow:
    wf = _workflow(configs, tmp, **kw)
    wf.run()
    wf.finalize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_tagged):
    """An untrained CAM classifier's models/model.pt and a 2-epoch group-wise training (3 rounds, groups of 3)."""
    tmp = str(tmp_path_factory.mktemp("groupwise_bundle"))
    parser = ConfigParser()
    parser.read_config(_files(CLASSIFIER))
    parser.update({"roi_size": [32, 32], "model_name": "resnet10", "dataset_dir": small_tagged, "bundle_root": tmp})
    torch.manual_seed(0)
    os.makedirs(f"{tmp}/models")
    torch.save(parser.get_parsed_content("network_def").state_dict(), f"{tmp}/models/model.pt")
    wf = _run(GROUPWISE, tmp, dataset_dir=small_tagged, num_epochs=2, device="$torch.device('cpu')")
    return tmp, wf


def test_groupwise_training_trains_the_graph_on_groups_and_accumulates_maps(trained, small_tagged):
    tmp, wf = trained
    loader = wf.parser.get_parsed_content("train::dataloader")
    assert len(loader) == 12 and all(len(b["image"]) == 3 for b in loader)  # one group of 3 per batch
    trainer = wf.parser.get_parsed_content("train::trainer")
    assert trainer.state.iteration == 2 * 12
    state = torch.load(f"{tmp}/models/groupwise/model.pt", weights_only=True)
    assert "graph.update.gates.weight" in state and "classifier.classifier.weight" in state
    maps = load_accumulated_maps(f"{tmp}/outputs/groupwise/groupwise_maps.pt")
    # the last epoch stores every positive anchor (8 positive tiles), at the 2x2 map size of a 32x32 input
    assert len(maps["maps"]) == 8 and all(m.shape == (1, 2, 2) for m in maps["maps"].values())
    with open(f"{tmp}/outputs/groupwise/classifier_learning_curve.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 24  # one row per iteration


def test_groupwise_seeds_through_the_bundle_command_line(trained, small_tagged):
    tmp, _ = trained
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(_files(SEEDS)).replace(" ", "")]
    cmd += ["--meta_file", META, "--bundle_root", tmp, "--dataset_dir", small_tagged, "--seed_method", "groupwise"]
    cmd += ["--roi_size", "[32,32]", "--model_name", "resnet10", "--panel_samples", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = f"{tmp}/outputs/pseudo_labels_groupwise"
    metrics = json.load(open(f"{out}/seed_metrics.json"))
    assert metrics["seed_method"] == "groupwise" and metrics["num_images"] == metrics["num_scored"] == 12
    assert metrics["groupwise_accumulated"] == 8 and metrics["groupwise_computed"] == 0  # all read back by content
    assert metrics["negatives_all_background"] is True and 0.0 <= metrics["seed_miou"] <= 1.0
    assert len(json.load(open(f"{out}/dataset.json"))["training"]) == 12
    assert os.path.getsize(f"{tmp}/outputs/seeds_panel_groupwise.png") > 0


def test_mcof_seeds_through_the_bundle(trained, small_tagged):
    tmp, _ = trained
    wf = _workflow(SEEDS, tmp, dataset_dir=small_tagged, seed_method="mcof", device="$torch.device('cpu')")
    method = wf.parser.get_parsed_content("seeds::method")
    assert isinstance(method, MCOFSeeds) and method.initial_seeds.name == "cam" and method.num_rounds == 1
    assert [m.name for m in wf.parser.get_parsed_content("seeds::panel_methods")] == ["cam", "advcam", "prm", "mcof"]
    wf.run()
    wf.finalize()
    rounds = json.load(open(f"{tmp}/outputs/mcof/rounds.json"))
    assert [r["round"] for r in rounds["rounds"]] == [1] and rounds["saliency"] == "none"
    first = rounds["rounds"][0]
    assert first["seeds_from"] == "initial" and {"seed_miou", "seed_fg_iou"} <= set(first["seeds"])
    assert {"seed_miou"} <= set(first["regions"]) and {"dice", "miou"} <= set(first["segmenter"])
    assert os.path.isfile(f"{tmp}/models/mcof/round_1/model.pt")
    metrics = json.load(open(f"{tmp}/outputs/pseudo_labels_mcof/seed_metrics.json"))
    assert metrics["seed_method"] == "mcof" and metrics["num_scored"] == 12
    assert metrics["mcof_round_seed_miou"] == [first["seeds"]["seed_miou"]]
    assert metrics["seed_miou"] == pytest.approx(rounds["final"]["seed_miou"])  # the final round's maps


def test_the_new_methods_are_menu_components_built_without_training(tmp_path, small_tagged):
    parser = ConfigParser()
    parser.read_config(_files(SEEDS))
    methods = parser.config["seeds"]["methods"]
    assert methods["groupwise"]["_target_"] == "monai_wsss.attribution.GroupwiseSeeds"
    assert methods["mcof"]["_target_"] == "monai_wsss.apps.MCOFSeeds"
    assert parser["seeds"]["panel"] == ["cam", "advcam", "prm"] and parser["mcof"]["saliency"] == "none"
    # nothing is read before a method is called: the default run (advcam) needs no group-wise training
    parser.update({"dataset_dir": small_tagged, "bundle_root": str(tmp_path), "roi_size": [32, 32]})
    parser.update({"model_name": "resnet10", "classifier": "@network"})
    seeds = parser.get_parsed_content("seeds::methods::groupwise")
    assert isinstance(seeds, GroupwiseSeeds) and not os.path.exists(tmp_path / "models")


def test_paper_groupwise_schedule():
    parser = ConfigParser()
    parser.read_config(_files([*GROUPWISE, "paper_groupwise.json"]))
    assert parser["num_epochs"] == 15 and parser["roi_size"] == [224, 224] and parser["model_name"] == "resnet50"
    assert parser["optimizer"]["_target_"] == "torch.optim.SGD" and parser["optimizer"]["nesterov"] is True
    assert parser["groupwise"]["drop_rate"] == 0.8 and parser["groupwise"]["drop_threshold"] == 0.7
    handlers = parser["train"]["handlers"]
    assert handlers[-2]["_target_"] == "monai_wsss.handlers.OnlineMapAccumulator"
    assert handlers[-1]["lr_scheduler"]["milestones"] == [5, 10]


def test_a_tag_outside_the_declared_classes_is_refused(tmp_path, small_tagged):
    meta = json.load(open(os.path.join(small_tagged, "dataset.json")))
    meta["training"][2]["class_labels"] = ["mitochondrion"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(Exception) as info:
        _workflow(GROUPWISE, str(tmp_path), dataset_dir=str(bad)).run()
    chain = exception_messages(info.value)
    assert any("bad/dataset.json" in m and "['mitochondrion'] are not among the declared classes" in m for m in chain)


def _cli(configs: list[str], tmp: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(_files(configs)).replace(" ", "")]
    cmd += ["--meta_file", META, "--bundle_root", tmp, *args]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


SEED_ARGS = ["--roi_size", "[32,32]", "--model_name", "resnet10", "--panel_samples", "2", "--device", "cpu"]
SEED_ARGS += ["--advcam_steps", "1", "--advcam_flip", "false", "--mcof::num_rounds", "1"]
SEED_ARGS += ["--mcof::n_segments", "16", "--mcof::region_epochs", "5", "--mcof::segmenter::num_epochs", "1"]
SEED_ARGS += ["--mcof::segmenter::epoch_length", "2"]


@pytest.mark.parametrize("method", ["cam", "advcam", "prm", "groupwise", "mcof"])
def test_every_stage_for_every_seed_method_through_the_command_line(trained, small_tagged, method):
    """Seeds (unless an earlier test made them), segmenter, evaluation and inference, each through ``python -m
    monai.bundle run``, for every ``seed_method`` of the bundle."""
    tmp, _ = trained
    folder = f"{tmp}/outputs/pseudo_labels_{method}"
    if not os.path.isfile(f"{folder}/dataset.json"):
        _cli(SEEDS, tmp, "--dataset_dir", small_tagged, "--seed_method", method, *SEED_ARGS)
    assert json.load(open(f"{folder}/seed_metrics.json"))["seed_method"] == method
    short = ["--segment::num_epochs", "1", "--segment::epoch_length", "2", "--segment::batch_size", "4"]
    _cli(["segment.json"], tmp, "--dataset_dir", folder, *short, "--device", "cpu")
    assert os.path.isfile(f"{tmp}/models/segmenter_pseudo_labels_{method}/model.pt")
    _cli(["segment.json", "evaluate.json"], tmp, "--dataset_dir", folder, "--save_overlays", "false")
    with open(f"{tmp}/eval/segmenter_pseudo_labels_{method}/evaluate/metrics.csv") as f:
        metrics = {row[0]: float(row[1]) for row in csv.reader(f) if row}
    assert {"dice", "miou"} <= set(metrics) and all(0.0 <= v <= 1.0 for v in metrics.values())
    out = f"{tmp}/eval/inference_{method}"
    _cli(["inference.json"], tmp, "--seed_method", method, "--dataset_dir", folder, "--output_dir", out)
    test_images = json.load(open(f"{folder}/dataset.json"))["test"]
    written = sorted(n for n in os.listdir(out) if n.endswith("_seg.png"))
    assert len(written) == len(test_images) == 4
