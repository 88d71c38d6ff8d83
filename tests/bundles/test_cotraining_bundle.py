"""End-to-end tests of bundles/cotraining_semisupervised_seg on the real MNI152 tissue set at 4 mm (conftest.py)."""

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
from conftest import REPO, run_two_cpu_ranks
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

BUNDLE = os.path.join(REPO, "bundles", "cotraining_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
SMALL = {"roi_size": [32, 32], "backbone#channels": [8, 16, 32], "backbone#strides": [2, 2], "num_workers": 0}


def _train_workflow(tmp: str, dataset_dir: str, **kw) -> ConfigWorkflow:
    over = dict(SMALL)
    over.update(
        dataset_dir=dataset_dir,
        ckpt_dir=os.path.join(tmp, "models"),
        output_dir=os.path.join(tmp, "outputs"),
        num_epochs=2,
        epoch_length=2,
        batch_labeled=2,
        batch_unlabeled=2,
    )
    over.update(kw)
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        **over,
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


def test_train_learns_then_evaluates_on_unseen_slabs(tmp_path, tiny_tissue_dataset):
    """Co-training on real grey / white matter slices: the supervised loss falls, both ramps reach their full
    weights, and the soft vote beats chance-level Dice on test slabs never seen in training."""
    tmp = str(tmp_path)
    wf = _train(tmp, tiny_tissue_dataset, num_epochs=8, epoch_length=8, learning_rate=0.005)
    trainer = wf.parser.get_parsed_content("train::trainer")
    assert trainer.state.iteration == 64
    # rampup over 8 * 3 // 4 = 6 epochs: the last two epochs train at the full weights
    assert trainer.state.cot_weight == pytest.approx(1.0)
    assert trainer.state.adv_weight == pytest.approx(0.005)
    with open(os.path.join(tmp, "outputs", "learning_curve.csv")) as f:
        rows = list(csv.DictReader(f))
    sup = [float(r["loss_sup"]) for r in rows]
    assert np.mean(sup[-2:]) < 0.6 * np.mean(sup[:2]), sup
    assert all(float(r["loss_adv"]) > 0 and float(r["loss_cot"]) >= 0 for r in rows)
    assert os.path.isfile(os.path.join(tmp, "outputs", "learning_curve.png"))

    ev = _infer(tmp, tiny_tissue_dataset, os.path.join(tmp, "models", "model.pt"), evaluate=True)
    metrics = ev.parser.get_parsed_content("evaluator").state.metrics
    assert metrics["dice"] > 0.5, metrics  # grey + white matter mean Dice on 2 unseen slabs
    assert {"dice_member_0", "dice_member_1", "jaccard", "hd95_mm", "asd_mm"} <= set(metrics)
    with open(os.path.join(tmp_path, "eval", "metrics.csv")) as f:
        names = {line.split(",")[0] for line in f}
    assert {"dice", "dice_member_0", "dice_member_1"} <= names
    test = json.load(open(os.path.join(tiny_tissue_dataset, "dataset.json")))["test"]
    for case in test:
        name = os.path.basename(case["image"]).split(".")[0]
        seg = nib.load(os.path.join(tmp, "eval", f"{name}_seg.nii.gz"))
        ref = nib.load(os.path.join(tiny_tissue_dataset, case["image"]))
        assert seg.shape == ref.shape
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}
        unc = np.asarray(nib.load(os.path.join(tmp, "eval", f"{name}_uncertainty.nii.gz")).dataobj)
        assert unc.min() >= 0 and unc.max() <= np.log(2) + 1e-5
        assert os.path.isfile(os.path.join(tmp, "eval", f"{name}_overlay.png"))


def test_resume_continues_epochs(tmp_path, tiny_tissue_dataset):
    tmp = str(tmp_path)
    _train(tmp, tiny_tissue_dataset, num_epochs=2, epoch_length=2)
    assert sorted(os.listdir(os.path.join(tmp, "models"))) == ["checkpoint_epoch=2.pt", "model.pt"]
    second = _train_workflow(tmp, tiny_tissue_dataset, num_epochs=3, epoch_length=2)
    trainer = second.parser.get_parsed_content("train::trainer")
    seen = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    second.run()
    second.finalize()
    assert seen == [5, 6]
    opt = second.parser.get_parsed_content("optimizer")
    assert all(int(s["step"]) == 6 for s in opt.state.values())  # Adam's step count carried over


def test_cli_train_and_infer_with_member_outputs(tmp_path, tiny_tissue_dataset):
    tmp = str(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--meta_file", META, "--bundle_root", BUNDLE, "--dataset_dir", tiny_tissue_dataset]
    small = ["--roi_size", "[32,32]", "--backbone#channels", "[8,16,32]", "--backbone#strides", "[2,2]"]
    train = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "train.json")]
    train += common + small + ["--num_epochs", "1", "--epoch_length", "2", "--ckpt_dir", f"{tmp}/models"]
    train += ["--output_dir", f"{tmp}/outputs"]
    proc = subprocess.run(train, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isfile(f"{tmp}/models/model.pt")
    infer = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "inference.json")]
    infer += common + small + ["--ckpt_path", f"{tmp}/models/model.pt", "--output_dir", f"{tmp}/eval"]
    infer += ["--save_members", "true"]
    proc = subprocess.run(infer, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.load(open(os.path.join(tiny_tissue_dataset, "dataset.json")))
    name = os.path.basename(meta["test"][0]["image"]).split(".")[0]
    ref = nib.load(os.path.join(tiny_tissue_dataset, meta["test"][0]["image"]))
    members = nib.load(f"{tmp}/eval/{name}_members.nii.gz")
    assert members.shape[:3] == ref.shape and np.prod(members.shape[3:]) == 2 * 3  # S x C probability maps
    np.testing.assert_allclose(members.affine, ref.affine, atol=1e-4)
    probs = np.asarray(members.dataobj).reshape(*ref.shape, 2, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    seg = np.asarray(nib.load(f"{tmp}/eval/{name}_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(seg, probs.mean(-2).argmax(-1))  # soft vote = argmax of the members' mean


def test_verify_net_in_out_and_metadata():
    from monai.bundle import verify_metadata, verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=META,
        config_file=os.path.join(CONFIGS, "inference.json"),
        n=4,
        device="cpu",
        **{"backbone#channels": [4, 8, 16, 32]},
    )
    verify_metadata(meta_file=META, filepath=SCHEMA)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"num_models": 1}, "must be >= 2"),
        ({"overlap": 1.5}, "overlap"),
        ({"fgsm_eps": -0.1}, "eps"),
        ({"vat_eps": -0.1}, "eps"),
    ],
)
def test_bad_config_values_give_clear_errors(tmp_path, tiny_tissue_dataset, override, message):
    over = dict(SMALL, dataset_dir=tiny_tissue_dataset, ckpt_dir=str(tmp_path), output_dir=str(tmp_path), **override)
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        **over,
    )
    wf.initialize()
    with pytest.raises(Exception) as info:
        wf.parser.get_parsed_content("train::trainer")
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any(message in m for m in chain), chain


def test_paper_override_holds_the_reference_schedule():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "paper.json")])
    assert parser.get_parsed_content("learning_rate") == 5e-4 and parser.get_parsed_content("lr_gamma") == 0.7
    assert parser.get_parsed_content("lr_step_epochs") == 10 and parser.get_parsed_content("rampup_epochs") == 100
    assert parser.get_parsed_content("max_cot_weight") == 1.0 and parser.get_parsed_content("max_adv_weight") == 0.005
    assert parser.get_parsed_content("fgsm_eps") == 0.05 and parser.get_parsed_content("vat_eps") == 0.05
    assert parser.get_parsed_content("vat_xi") == 1e-6 and parser.get_parsed_content("vat_power_iterations") == 1


def test_torchrun_two_cpu_processes(tmp_path, tiny_tissue_dataset):
    """multi_gpu_train.json with 2 CPU processes (gloo): identical parameters on both ranks, only rank 0 writes."""
    tmp = str(tmp_path)
    args = ["--dataset_dir", tiny_tissue_dataset, "--roi_size", "[32,32]", "--backbone#channels", "[8,16,32]"]
    args += ["--backbone#strides", "[2,2]", "--num_epochs", "2", "--epoch_length", "2", "--batch_labeled", "1"]
    args += ["--batch_unlabeled", "1"]
    configs = [f"{CONFIGS}/train.json", f"{CONFIGS}/multi_gpu_train.json"]
    w0, w1 = run_two_cpu_ranks(tmp, configs, META, BUNDLE, args)
    start = torch.load(os.path.join(tmp, "models_rank0", "model.pt"), weights_only=True)
    params = [k for k in w0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 20 and any(k.startswith("members.1.") for k in params)
    for k in params:
        torch.testing.assert_close(w0[k], w1[k], msg=f"ranks differ in {k}")
        torch.testing.assert_close(start[k], w0[k])
    assert not os.path.exists(os.path.join(tmp, "models_rank1"))
    assert not os.path.exists(os.path.join(tmp, "outputs_rank1"))
