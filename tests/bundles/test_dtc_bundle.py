"""End-to-end tests of bundles/dtc_semisupervised_seg on small real scans (see conftest.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
SMALL = {"roi_size": [32, 32, 32], "network_def#features": 8, "num_workers": 0}


def _train_overrides(tmp: str, dataset_dir: str, **kw) -> dict:
    out = dict(SMALL)
    out.update(
        dataset_dir=dataset_dir,
        ckpt_dir=os.path.join(tmp, "models"),
        output_dir=os.path.join(tmp, "outputs"),
        num_epochs=2,
        epoch_length=2,
        val_interval=1,
    )
    out.update(kw)
    return out


def _train_workflow(tmp: str, dataset_dir: str, **kw) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        **_train_overrides(tmp, dataset_dir, **kw),
    )
    wf.initialize()
    assert wf.check_properties() == []
    return wf


def _train(tmp: str, dataset_dir: str, **kw) -> ConfigWorkflow:
    wf = _train_workflow(tmp, dataset_dir, **kw)
    wf.run()
    wf.finalize()
    return wf


def _infer(tmp: str, dataset_dir: str, ckpt: str, evaluate: bool, **kw) -> ConfigWorkflow:
    files = [os.path.join(CONFIGS, "inference.json")] + ([os.path.join(CONFIGS, "evaluate.json")] if evaluate else [])
    over = {k: v for k, v in SMALL.items() if k != "num_workers"}
    over.update(dataset_dir=dataset_dir, ckpt_path=ckpt, output_dir=os.path.join(tmp, "eval"), **kw)
    wf = ConfigWorkflow(config_file=files, meta_file=META, workflow_type="infer", bundle_root=BUNDLE, **over)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return wf


def test_train_learns_on_real_crop_then_evaluates(tmp_path, tiny_brain_dataset):
    """60 iterations on a real T1 scan at 6 mm: the loss falls and the Dice on that scan exceeds 0.75 and Otsu."""
    tmp = str(tmp_path)
    wf = _train(tmp, tiny_brain_dataset, num_epochs=6, epoch_length=10, val_interval=100)
    trainer = wf.parser.get_parsed_content("train::trainer")
    assert trainer.state.iteration == 60
    assert trainer.state.unsup_weight == pytest.approx(1.0 * np.exp(-5 * (1 - 59 / 60) ** 2))
    with open(os.path.join(tmp, "outputs", "learning_curve.csv")) as f:
        rows = list(csv.DictReader(f))
    loss = np.array([float(r["loss"]) for r in rows])
    assert len(loss) == 60
    assert loss[-10:].mean() < 0.85 * loss[:10].mean()  # measured: 0.58 -> 0.43
    assert os.path.isfile(os.path.join(tmp, "outputs", "learning_curve.png"))
    ckpt = os.path.join(tmp, "models", "model.pt")
    state = torch.load(ckpt, weights_only=True)
    assert "seg_head.weight" in state and "sdf_head.weight" in state

    ev = _infer(tmp, tiny_brain_dataset, ckpt, evaluate=True)
    metrics = ev.parser.get_parsed_content("evaluator").state.metrics
    assert metrics["dice"] > 0.75, metrics  # measured 0.83
    assert metrics["dice"] > metrics["baseline_dice"], metrics  # Otsu + largest component: 0.71
    assert {"jaccard", "hd95_mm", "asd_mm", "baseline_dice"} <= set(metrics)
    assert os.path.isfile(os.path.join(tmp, "eval", "robex_overlay.png"))
    assert os.path.isfile(os.path.join(tmp, "eval", "metrics.csv"))


def test_resume_continues_iterations_optimizer_and_lr(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    first = _train(tmp, tiny_brain_dataset, num_epochs=2, epoch_length=2, lr_step_iterations=5)
    opt1 = first.parser.get_parsed_content("optimizer").state_dict()
    assert sorted(os.listdir(os.path.join(tmp, "models"))) == ["checkpoint_epoch=2.pt", "model.pt"]
    # "killed" after 4 iterations; re-run asking for 8: it resumes at iteration 4
    second = _train_workflow(tmp, tiny_brain_dataset, num_epochs=4, epoch_length=2, lr_step_iterations=5)
    trainer = second.parser.get_parsed_content("train::trainer")
    opt2 = second.parser.get_parsed_content("optimizer")
    seen, resumed_buf = [], []

    def record(engine):
        seen.append(engine.state.iteration)
        if not resumed_buf:  # before the first resumed step: the optimiser state just loaded
            resumed_buf.append(opt2.state[opt2.param_groups[0]["params"][0]]["momentum_buffer"].clone())

    trainer.add_event_handler(Events.ITERATION_STARTED, record)
    second.run()
    assert seen == [5, 6, 7, 8]
    sched = second.parser.get_parsed_content("lr_scheduler")
    assert sched.last_epoch == 8
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01 * 0.1)  # one StepLR step at iteration 5
    first_buf = next(iter(opt1["state"].values()))["momentum_buffer"]
    assert first_buf.abs().sum() > 0
    torch.testing.assert_close(resumed_buf[0], first_buf)  # momentum carried over from the first run
    ckpt = torch.load(os.path.join(tmp, "models", "checkpoint_epoch=4.pt"), weights_only=True)
    assert ckpt["trainer"]["iteration"] == 8
    second.finalize()


def test_inference_keeps_input_space_on_anisotropic_non_ras(tmp_path, robex_small):
    tmp = str(tmp_path)
    img, _, _ = robex_small
    # anisotropic spacing (2 x 3 x 4.5 mm) and LPI-like axis flips plus an axis permutation
    affine = np.array([[0.0, -3.0, 0.0, 40.0], [-2.0, 0.0, 0.0, 10.0], [0.0, 0.0, -4.5, 80.0], [0, 0, 0, 1]])
    data = img[:, :, :30]
    os.makedirs(os.path.join(tmp, "in"))
    path = os.path.join(tmp, "in", "scan.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), path)
    net = __import__("monai_wsss.networks", fromlist=["DualTaskVNet"]).DualTaskVNet(features=8)
    ckpt = os.path.join(tmp, "model.pt")
    torch.save(net.state_dict(), ckpt)
    _infer(tmp, os.path.join(tmp, "in"), ckpt, evaluate=False)
    out = nib.load(os.path.join(tmp, "eval", "scan_seg.nii.gz"))
    assert out.shape == data.shape
    np.testing.assert_allclose(out.affine, affine, atol=1e-4)
    assert os.path.isfile(os.path.join(tmp, "eval", "scan_overlay.png"))


def test_cli_train_and_evaluate(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--meta_file", META, "--bundle_root", BUNDLE, "--dataset_dir", tiny_brain_dataset]
    small = ["--roi_size", "[32,32,32]", "--network_def#features", "8"]
    train = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "train.json")]
    train += common + small + ["--num_epochs", "1", "--epoch_length", "2", "--ckpt_dir", f"{tmp}/models"]
    train += ["--output_dir", f"{tmp}/outputs"]
    subprocess.run(train, check=True, env=env, capture_output=True)
    assert os.path.isfile(f"{tmp}/models/model.pt")
    configs = f"['{CONFIGS}/inference.json','{CONFIGS}/evaluate.json']"
    ev = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs] + common + small
    ev += ["--ckpt_path", f"{tmp}/models/model.pt", "--output_dir", f"{tmp}/eval"]
    subprocess.run(ev, check=True, env=env, capture_output=True)
    with open(f"{tmp}/eval/metrics.csv") as f:
        names = {line.split(",")[0] for line in f}
    assert {"dice", "jaccard", "hd95_mm", "asd_mm", "baseline_dice"} <= names


def test_verify_net_in_out_and_metadata():
    from monai.bundle import verify_metadata, verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=META,
        config_file=os.path.join(CONFIGS, "inference.json"),
        n=2,
        device="cpu",
        **{"network_def#features": 8},
    )
    verify_metadata(meta_file=META, filepath=SCHEMA)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("network_data_format"),
        lambda m: m.update(version=1),
        lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels="one"),
    ],
)
def test_schema_rejects_bad_metadata(tmp_path, change):
    from monai.bundle import verify_metadata

    with open(META) as f:
        meta = json.load(f)
    change(meta)
    bad = os.path.join(tmp_path, "metadata.json")
    with open(bad, "w") as f:
        json.dump(meta, f)
    with pytest.raises(ValueError):
        verify_metadata(meta_file=bad, filepath=SCHEMA)


def test_paper_override_holds_the_reference_schedule():
    with open(os.path.join(CONFIGS, "paper.json")) as f:
        paper = json.load(f)
    assert paper["num_epochs"] * paper["epoch_length"] == 6000 and paper["lr_step_iterations"] == 2500
    assert paper["rampup_iterations"] == 6000 and paper["rampup_step_iterations"] == 150
    assert paper["roi_size"] == [112, 112, 80] and paper["seed"] == 1337


def test_schedule_keys_keep_the_iteration_counts():
    """num_epochs x epoch_length is the run; the lr step and the ramp stay iteration counts (default and paper)."""
    from monai.bundle import ConfigParser

    default = ConfigParser()
    default.read_config(os.path.join(CONFIGS, "train.json"))
    assert default["num_epochs"] * default["epoch_length"] == 150  # the 150 iterations of version 0.1.0
    assert default.get_parsed_content("lr_step_iterations") == 62  # lr x0.1 after iterations 62 and 124
    assert default.get_parsed_content("rampup_iterations") == 150
    assert default["train"]["trainer"]["max_epochs"] == "@num_epochs"
    assert default["train"]["trainer"]["epoch_length"] == "@epoch_length"
    paper = ConfigParser()
    paper.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "paper.json")])
    assert paper.get_parsed_content("lr_step_iterations") == 2500
    assert paper.get_parsed_content("rampup_iterations") == 6000
    assert paper["num_epochs"] * paper["epoch_length"] == 6000
    overlap = paper.get_parsed_content("validate::inferer#overlap")
    assert overlap == pytest.approx([1 - 18 / 112, 1 - 18 / 112, 1 - 4 / 80])
    for name in ("train.json", "inference.json", "paper.json"):
        with open(os.path.join(CONFIGS, name)) as f:
            keys = set(json.load(f))
        assert not keys & {"patch_size", "num_iterations", "max_epochs", "epochs"}, (name, keys)


def test_bad_dataset_gives_one_clear_error(tmp_path, tiny_brain_dataset):
    import shutil

    bad = os.path.join(tmp_path, "bad")
    shutil.copytree(tiny_brain_dataset, bad)
    lbl = os.path.join(bad, "labelsTr", "robex.nii.gz")
    arr = np.asarray(nib.load(lbl).dataobj).copy()
    arr[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(arr, nib.load(lbl).affine), lbl)
    with pytest.raises(Exception) as info:
        _train(str(tmp_path), bad)
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("robex.nii.gz" in m and "[7]" in m for m in chain), chain


def test_slicer_style_inference(tmp_path, robex_small):
    """What 3D Slicer's MONAI-bundle runner does: parse inference.json alone, override the standard keys, run."""
    from monai.bundle import ConfigParser

    tmp = str(tmp_path)
    img, _, aff = robex_small
    image = os.path.join(tmp, "volume.nii.gz")
    nib.save(nib.Nifti1Image(img, aff), image)
    net = __import__("monai_wsss.networks", fromlist=["DualTaskVNet"]).DualTaskVNet(features=8)
    os.makedirs(os.path.join(tmp, "bundle", "models"))
    torch.save(net.state_dict(), os.path.join(tmp, "bundle", "models", "model.pt"))
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "inference.json"))
    parser.read_meta(META)
    parser.update(
        {
            "bundle_root": os.path.join(tmp, "bundle"),
            "dataset_dir": tmp,
            "output_dir": os.path.join(tmp, "out"),
            "datalist": [image],
            "device": torch.device("cpu"),
            "dataloader#num_workers": 0,
            "network_def#features": 8,
        }
    )
    parser.get_parsed_content("evaluator").run()
    outputs = [f for f in os.listdir(os.path.join(tmp, "out")) if f.endswith(".nii.gz")]
    assert outputs == ["volume_seg.nii.gz"]
    seg = nib.load(os.path.join(tmp, "out", outputs[0]))
    assert seg.shape == img.shape
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1}
    names = parser.get("_meta_#network_data_format#outputs#pred#channel_def")
    assert names == {"0": "background", "1": "foreground"}
