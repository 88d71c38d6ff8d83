"""Issue 19, through the CLI as a user runs it (``python -m monai.bundle run``, tiny real scans, seconds): the DTC
bundle trains exactly num_epochs x epoch_length iterations and says so, an ordered split is a documented key and is
written to split.json, a resume names its checkpoint, the best validation model is kept, and the optional GPU
decoder notices stay off a CPU run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from monai_wsss.handlers import read_best_record

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
SMALL = ["--roi_size", "[32,32,32]", "--network_def#features", "8", "--num_workers", "0"]


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, tiny_brain_dataset) -> str:
    """A fully labelled decathlon folder of three real scans (ROBEX, its mirror, ROBEX again) and a validation
    list, so the bundle splits labelled cases itself."""
    root = str(tmp_path_factory.mktemp("labelled"))
    for sub in ("imagesTr", "labelsTr"):
        shutil.copytree(os.path.join(tiny_brain_dataset, sub), os.path.join(root, sub))
    for sub in ("imagesTr", "labelsTr"):
        shutil.copy(os.path.join(root, sub, "robex.nii.gz"), os.path.join(root, sub, "robex_copy.nii.gz"))
    cases = [{"image": f"imagesTr/{n}.nii.gz", "label": f"labelsTr/{n}.nii.gz"} for n in ("robex", "robex_mirror")]
    cases.append({"image": "imagesTr/robex_copy.nii.gz", "label": "labelsTr/robex_copy.nii.gz"})
    meta = {"labels": {"0": "background", "1": "brain"}, "training": cases, "validation": [cases[0]]}
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(meta, f)
    return root


def _train(tmp: str, dataset_dir: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "train.json")]
    cmd += ["--meta_file", os.path.join(CONFIGS, "metadata.json"), "--bundle_root", BUNDLE]
    cmd += ["--dataset_dir", dataset_dir, "--ckpt_dir", f"{tmp}/models", "--output_dir", f"{tmp}/outputs"]
    proc = subprocess.run(
        cmd + SMALL + list(args), env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_schedule_is_exact_and_logged_split_ordered_best_model_quiet(tmp_path, labelled_folder):
    tmp = str(tmp_path)
    proc = _train(
        tmp, labelled_folder, "--num_epochs", "2", "--epoch_length", "3", "--val_interval", "1",
        "--num_labeled", "2", "--split_order", "ordered",
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    # the run is 2 x 3 = 6 iterations, it says so first, and it ends at iteration 6
    first = next(line for line in proc.stdout.splitlines() if "monai_wsss - INFO" in line)
    assert "2 epochs x 3 iterations = 6 iterations" in first, first
    assert "dtc_semisupervised_seg" in first and os.path.abspath(labelled_folder) in first and "device cpu" in first
    assert "split ordered: 2 labeled, 1 unlabeled, 1 validation, 0 test" in first, first
    ckpt = torch.load(os.path.join(tmp, "models", "checkpoint_epoch=2.pt"), weights_only=True)
    assert (ckpt["trainer"]["iteration"], ckpt["trainer"]["max_epochs"], ckpt["trainer"]["epoch_length"]) == (6, 2, 3)
    # ordered split: the first two cases of the datalist keep their labels, and split.json says so
    with open(os.path.join(tmp, "outputs", "split.json")) as f:
        split = json.load(f)
    assert split["split_order"] == "ordered"
    assert split["labeled"] == ["imagesTr/robex.nii.gz", "imagesTr/robex_mirror.nii.gz"]
    assert split["unlabeled"] == ["imagesTr/robex_copy.nii.gz"]
    assert split["validation"] == ["imagesTr/robex.nii.gz"] and split["test"] == []
    assert "labeled (2): imagesTr/robex.nii.gz, imagesTr/robex_mirror.nii.gz" in proc.stdout
    # validated run: the best model by val_mean_dice is kept beside the latest checkpoint and model.pt
    files = sorted(os.listdir(os.path.join(tmp, "models")))
    assert files == ["checkpoint_epoch=2.pt", "model.pt", "model_best.json", "model_best.pt"]
    best = torch.load(os.path.join(tmp, "models", "model_best.pt"), weights_only=True)
    assert "seg_head.weight" in best
    first_best = read_best_record(os.path.join(tmp, "models", "model_best.json"))
    assert first_best["key_metric"] == "val_mean_dice" and first_best["epoch"] in (1, 2)
    # quiet on CPU: no notice about the optional GPU DICOM decoder; a fresh start is not called a "resume"
    assert "nvImageCodec" not in log and "NvImgCodecPydicomReader" not in log
    assert "Trainer - INFO - Engine run resuming from iteration 0" not in log  # (the evaluator's own run keeps it)
    assert "training starts from iteration 0" in proc.stdout

    # resume to 3 epochs: the log names the checkpoint file and the iteration it continues after
    again = _train(tmp, labelled_folder, "--num_epochs", "3", "--epoch_length", "3", "--val_interval", "1")
    name = os.path.join(tmp, "models", "checkpoint_epoch=2.pt")
    assert f"Resuming from {name}: continues after iteration 6 (epoch 2 of 3), 3 of 9 iterations left." in again.stdout
    assert "Trainer - INFO - Engine run resuming from iteration 0" not in again.stdout + again.stderr
    ckpt = torch.load(os.path.join(tmp, "models", "checkpoint_epoch=3.pt"), weights_only=True)
    assert ckpt["trainer"]["iteration"] == 9
    # the resumed run compares against the interrupted run's best: model_best.pt never gets worse
    assert read_best_record(os.path.join(tmp, "models", "model_best.json"))["value"] >= first_best["value"]


def test_seeded_split_and_verbose_decoder_notices(tmp_path, labelled_folder):
    tmp = str(tmp_path)
    proc = _train(
        tmp, labelled_folder, "--num_epochs", "1", "--epoch_length", "1", "--num_labeled", "1",
        "--seed", "3", "--verbose", "True", "--resume", "False",
    )  # fmt: skip
    with open(os.path.join(tmp, "outputs", "split.json")) as f:
        split = json.load(f)
    from monai_wsss.data import load_semisupervised_datalist

    expected = load_semisupervised_datalist(labelled_folder, num_labeled=1, seed=3, validate=False)
    assert split["split_order"] == "seeded" and split["seed"] == 3
    assert split["labeled"] == [os.path.relpath(d["image"], labelled_folder) for d in expected["labeled"]]
    assert len(split["unlabeled"]) == 2
    assert "split seeded, seed 3: 1 labeled, 2 unlabeled" in proc.stdout
    log = proc.stdout + proc.stderr
    assert "nvImageCodec" in log  # verbose: MONAI's own notice is shown again


@pytest.mark.parametrize("args", [["--num_epochs", "0"], ["--epoch_length", "-2"], ["--num_epochs", "2.5"]])
def test_schedule_that_cannot_be_honoured_is_one_clear_error(tmp_path, labelled_folder, args):
    proc = _train(str(tmp_path), labelled_folder, *args, check=False)
    assert proc.returncode != 0
    key = args[0][2:]
    assert f"`{key}` must be a positive integer" in proc.stderr, proc.stderr[-2000:]
    assert not os.path.isdir(os.path.join(tmp_path, "models")) or not os.listdir(os.path.join(tmp_path, "models"))
