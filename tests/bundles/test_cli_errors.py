"""
Issue 18, item 3: a bundle run that stops on bad input or a bad setting ends with ONE message (file or setting,
problem, what to do) as its last lines, not MONAI's "Failed to instantiate component". The real command line
(``python -m monai.bundle run``) on tiny real scans, one subprocess per defect class; the setting rules and the
switch wiring are checked in-process.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from monai.bundle import ConfigParser

from monai_wsss.errors import InputError, SettingsError, find_input_error
from monai_wsss.settings import as_switch, check_command_line, check_setting

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
HEADER = "monai_wsss: the run stopped on a problem with its input or settings:"
CHECK = "$monai_wsss.settings.check_command_line()"
CLI_IMPORT = "$import monai_wsss.cli"


def _run(tmp: str, config: str, dataset_dir: str, *args: str) -> list[str]:
    """Run a DTC config; return the last lines of stderr (the run must fail)."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, config)]
    cmd += ["--meta_file", os.path.join(CONFIGS, "metadata.json"), "--bundle_root", BUNDLE]
    cmd += ["--dataset_dir", dataset_dir, "--output_dir", f"{tmp}/outputs"]
    cmd += ["--ckpt_dir", f"{tmp}/models"] if config == "train.json" else ["--ckpt_path", f"{tmp}/models/model.pt"]
    cmd += ["--network_def#features", "8", *args]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not os.path.exists(os.path.join(tmp, "models", "model.pt"))  # nothing trained
    lines = proc.stderr.rstrip("\n").splitlines()
    assert HEADER in lines, proc.stderr[-3000:]
    assert "Failed to instantiate" not in "\n".join(lines[lines.index(HEADER) :])
    return lines[lines.index(HEADER) + 1 :]


@pytest.fixture
def folder(tmp_path, tiny_brain_dataset) -> str:
    root = str(tmp_path / "data")
    shutil.copytree(tiny_brain_dataset, root)
    return root


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--learing_rate", "5"],
            [
                "  --learing_rate: is not a setting of {cfg} (MONAI would add it and ignore it).",
                "  What to do: did you mean --learning_rate?",
            ],
        ),
        (
            ["--num_epochs", "abc"],
            [
                "  --num_epochs: `num_epochs` must be a positive integer, got 'abc'.",
                "  What to do: e.g. --num_epochs 10.",
            ],
        ),
        (
            ["--epoch_length", "0"],
            [
                "  --epoch_length: `epoch_length` must be a positive integer, got 0.",
                "  What to do: e.g. --epoch_length 10.",
            ],
        ),
        (
            ["--resume", "maybe"],
            ["  --resume: must be true or false, got 'maybe'.", "  What to do: pass --resume true or --resume false."],
        ),
    ],
    ids=["unknown_key", "wrong_type", "zero_schedule", "bad_switch"],
)
def test_bad_setting_is_the_last_message(tmp_path, folder, args, expected):
    cfg = os.path.join(CONFIGS, "train.json")
    assert _run(str(tmp_path), "train.json", folder, *args) == [e.format(cfg=cfg) for e in expected]


def _flip_crc(path: str) -> None:
    raw = bytearray(open(path, "rb").read())
    raw[-8] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(raw))


def test_corrupt_scan_is_the_last_message(tmp_path, folder):
    bad = os.path.join(folder, "imagesTr", "mni152.nii.gz")
    _flip_crc(bad)
    lines = _run(str(tmp_path), "train.json", folder, "--num_epochs", "1", "--epoch_length", "1")
    assert lines[0] == "  1 problem in the dataset:"
    assert lines[1].startswith(f"    {bad}: the gzip data is corrupt (CRC check failed")
    assert lines[1].endswith("re-copy or re-export the file.")
    assert lines[2:] == ["  What to do: fix the files named above, or remove their cases from the datalist."]


def test_2d_scan_to_the_3d_bundle_and_missing_inference_file(tmp_path, folder):
    flat = os.path.join(folder, "imagesTr", "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(30, 30)).astype(np.float32), np.eye(4)), flat)
    with open(os.path.join(folder, "dataset.json")) as f:
        meta = json.load(f)
    meta["unlabeled"].append({"image": "imagesTr/flat.nii.gz"})
    meta["test"].append({"image": "imagesTs/gone.nii.gz"})
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(meta, f)
    lines = _run(str(tmp_path), "inference.json", folder)  # the inference list: its missing file is named
    assert lines == [
        "  1 problem in the dataset:",
        f"    {folder}/imagesTs/gone.nii.gz: file not found.",
        "  What to do: fix the files named above, or remove their cases from the datalist.",
    ]
    meta["test"].pop()
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(meta, f)
    lines = _run(str(tmp_path), "train.json", folder, "--num_epochs", "1", "--epoch_length", "1")
    assert lines[1] == (
        f"    {flat}: a 2D image (shape (30, 30), 1 channel(s)), but this bundle's network takes 3D images; give 3D "
        "files or use a 2D bundle."
    )


# --- in-process: the rules, the wiring of switches, the hook's search ---------------------------------------------


@pytest.mark.parametrize(
    "text, value", [("true", True), ("FALSE", False), ("False", False), ("Yes", True), ("0", False)]
)
def test_switch_accepts_true_false_in_any_case(text, value):
    assert as_switch(text, "resume") is value
    assert as_switch(value, "resume") is value


def test_setting_rules():
    check_setting("num_epochs", 3, 10)
    check_setting("learning_rate", 1e-3, 0.01)
    check_setting("roi_size", [32, 32, 16], [64, 64, 32])
    with pytest.raises(SettingsError, match=r"must have 3 entries .*got \[32, 32\]") as err:
        check_setting("roi_size", [32, 32], [64, 64, 32])
    assert err.value.file == "--roi_size" and err.value.hint == 'e.g. --roi_size "[64,64,32]".'
    with pytest.raises(SettingsError, match="must be a number > 0, got -0.1"):
        check_setting("learning_rate", -0.1, 0.01)
    with pytest.raises(SettingsError, match=r"must be in \(0, 1\], got 1.5"):
        check_setting("labeled_fraction", 1.5, None)
    with pytest.raises(SettingsError, match="must be an integer, got 'x'"):
        check_setting("network_def::features", "x", 16)  # any other key: the type of its default
    with pytest.raises(SettingsError, match="must be true or false"):
        check_setting("save_overlays", "sometimes", True)


def test_command_line_check_runs_only_under_the_bundle_cli():
    main = os.path.join(os.path.dirname(__import__("monai").__file__), "bundle", "__main__.py")
    cfg = os.path.join(CONFIGS, "train.json")
    check_command_line(["pytest", "run", "--config_file", cfg, "--learing_rate", "5"])  # not the bundle CLI
    check_command_line([main, "run", "--config_file", cfg, "--meta_file", "m.json", "--num_epochs", "2"])
    check_command_line([main, "run", "--config_file", cfg, "--train#trainer#max_epochs", "2", "--resume", "FALSE"])
    with pytest.raises(SettingsError, match="is not a setting of") as err:
        check_command_line([main, "run", "--config_file", cfg, "--train::trainer::max_epoch", "2"])
    assert err.value.file == "--train::trainer::max_epoch"
    assert err.value.hint == "did you mean --train::trainer::max_epochs?"
    advcam = os.path.join(REPO, "bundles", "weakly_supervised_seg", "configs")
    seeds = [f"{advcam}/train_classifier.json", f"{advcam}/make_seeds.json"]
    check_command_line([main, "run", "--config_file", str(seeds), "--seeds::methods::mine", "{}"])  # a new entry


def test_resume_false_from_a_command_line_disables_resuming():
    """``--resume false`` arrives as the string "false": the resume handler must read it as False."""
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "train.json"))
    parser.update({"resume": "false", "amp": "FALSE", "bundle_root": BUNDLE})
    handlers = parser["train"]["handlers"]
    index = next(i for i, h in enumerate(handlers) if h.get("_target_", "").endswith("ResumeCheckpointLoader"))
    assert parser.get_parsed_content(f"train::handlers::{index}::enabled") is False
    assert parser.get_parsed_content("train::trainer::amp") is False
    parser.update({"resume": "True"})
    assert parser.get_parsed_content(f"train::handlers::{index}::enabled", lazy=False) is True


def test_every_bundle_config_installs_the_hook_and_checks_first():
    bundles = [
        "weakly_supervised_seg",
        "cotraining_semisupervised_seg",
        "dtc_semisupervised_seg",
        "geometric_active_learning",
        "pix2pix_microscopy_synthesis",
    ]
    paths = [p for b in bundles for p in glob.glob(os.path.join(REPO, "bundles", b, "configs", "*.json"))]
    paths = [p for p in paths if not p.endswith("metadata.json")]
    assert len(paths) >= 25
    for path in paths:
        with open(path) as f:
            config = json.load(f)
        if "imports" in config:
            assert config["imports"][0] == CLI_IMPORT, path
        if "initialize" in config:
            assert config["initialize"][0] == CHECK, path


def test_hook_finds_the_error_in_the_chain():
    err = InputError("bad", file="f.nii.gz", hint="fix it")
    try:
        try:
            raise err
        except InputError as e:
            raise RuntimeError("Failed to instantiate component") from e
    except RuntimeError as wrapped:
        assert find_input_error(wrapped) is err
    assert find_input_error(RuntimeError("other")) is None
    assert str(err) == "f.nii.gz: bad"
