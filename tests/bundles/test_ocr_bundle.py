"""bundles/ocr_supervised_seg end to end on real MNI152 slices (4 mm): every head x criterion through ConfigWorkflow,
evaluate.json, inference.json, verify_net_in_out, the CLI, paper.json and two CPU ranks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import pytest
import torch
from conftest import REPO, run_two_cpu_ranks
from monai.bundle import ConfigParser, ConfigWorkflow, verify_net_in_out

from monai_wsss.networks import ObjectContextualNet

BUNDLE = os.path.join(REPO, "bundles", "ocr_supervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
TINY = {
    "roi_size": [32, 32],
    "batch_size": 4,
    "num_epochs": 1,
    "epoch_length": 2,
    "segment::backbone_features": [4, 4, 8, 8, 16, 4],
    "segment::ocr_mid_channels": 8,
    "segment::ocr_key_channels": 4,
}

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


@pytest.fixture(scope="module")
def tiny_slices(tmp_path_factory) -> str:
    """2D slices of the real MNI152 grey / white matter set at 4 mm (about 49 x 58 pixels)."""
    from monai_wsss.data import build_mni152_tissue_slices_dataset

    root = str(tmp_path_factory.mktemp("tiny_slices"))
    return build_mni152_tissue_slices_dataset(root, spacing=4.0, slab_slices=3, slab_gap=1)


def _workflow(configs: list[str], workflow_type: str, tmp: str, **over) -> ConfigWorkflow:
    files = [os.path.join(CONFIGS, c) for c in configs]
    wf = ConfigWorkflow(config_file=files, meta_file=META, workflow_type=workflow_type, bundle_root=tmp, **over)
    wf.initialize()
    return wf


@pytest.mark.parametrize(
    "head,criterion", [("plain", "dicece"), ("ocr", "lall"), ("ocr", "dicece_lall"), ("plain", "ce")]
)
def test_train_every_head_and_criterion(tmp_path, tiny_slices, head, criterion):
    tmp = str(tmp_path)
    wf = _workflow(["train.json"], "train", tmp, dataset_dir=tiny_slices, head=head, criterion=criterion, **TINY)
    wf.run()
    wf.finalize()
    net = wf.parser.get_parsed_content("segment::network")
    assert isinstance(net, ObjectContextualNet) == (head == "ocr")
    assert os.path.isfile(f"{tmp}/models/model.pt")
    metrics = wf.parser.get_parsed_content("segment::evaluator").state.metrics
    assert 0.0 <= metrics["dice"] <= 1.0 and "dice_per_class" in metrics
    with open(f"{tmp}/outputs/learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["loss"]) > 0 for r in rows)


def test_ocr_learns_and_evaluate_reproduces_its_metrics(tmp_path, tiny_slices):
    """80 iterations of the OCR head with Dice+CE+LALL beat chance on unseen slices; evaluate.json reloads model.pt
    and reports the same numbers."""
    tmp = str(tmp_path)
    over = {**TINY, "num_epochs": 2, "epoch_length": 40, "learning_rate": 0.005}
    over.update(head="ocr", criterion="dicece_lall")
    wf = _workflow(["train.json"], "train", tmp, dataset_dir=tiny_slices, **over)
    wf.run()
    trained = dict(wf.parser.get_parsed_content("segment::evaluator").state.metrics)
    wf.finalize()
    assert trained["dice"] > 0.3  # grey and white matter both found on the held-out slices
    ev = _workflow(["train.json", "evaluate.json"], "infer", tmp, dataset_dir=tiny_slices, **over)
    ev.run()
    again = ev.parser.get_parsed_content("evaluator").state.metrics
    ev.finalize()
    assert again["dice"] == pytest.approx(trained["dice"], abs=1e-6)
    assert os.path.isfile(f"{tmp}/eval/evaluate/metrics.csv")


def test_inference_json_alone_segments_images_and_passes_verify_net_in_out(tmp_path, tiny_slices):
    tmp = str(tmp_path)
    wf = _workflow(["train.json"], "train", tmp, dataset_dir=tiny_slices, head="ocr", **TINY)
    wf.run()
    wf.finalize()
    small = {k: v for k, v in TINY.items() if k.startswith("segment::")}
    small = {k.replace("segment::", ""): v for k, v in small.items()}
    inf = _workflow(["inference.json"], "infer", tmp, dataset_dir=tiny_slices, head="ocr", roi_size=[32, 32], **small)
    inf.run()
    inf.finalize()
    meta = json.load(open(os.path.join(tiny_slices, "dataset.json")))
    first = os.path.basename(meta["test"][0]["image"]).replace(".nii.gz", "")
    seg = nib.load(f"{tmp}/eval/inference/{first}_seg.nii.gz")
    source = nib.load(os.path.join(tiny_slices, meta["test"][0]["image"]))
    assert seg.shape[:2] == source.shape[:2] and int(seg.get_fdata().max()) <= 2
    for head in ("plain", "ocr"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=META,
            config_file=os.path.join(CONFIGS, "inference.json"),
            n=2,
            any=16,
            head=head,
        )


def test_cli_with_user_folder_and_switches(tmp_path, tiny_slices):
    """`python -m monai.bundle run` on a user folder with one --dataset_dir override and the two switches."""
    over = ["--dataset_dir", tiny_slices, "--head", "ocr", "--criterion", "lall"]
    for key, value in TINY.items():
        over += [f"--{key}", json.dumps(value).replace(" ", "")]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "train.json")]
    cmd += ["--meta_file", META, "--bundle_root", str(tmp_path), *over]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 iterations" in proc.stdout + proc.stderr  # the first line states the run length
    assert os.path.isfile(tmp_path / "models" / "model.pt")
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert any(k.startswith("head.aux_head") for k in state)


def test_unknown_switch_value_is_named(tmp_path, tiny_slices):
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "train.json"))
    parser.update({"dataset_dir": tiny_slices, "head": "unet3000", "bundle_root": str(tmp_path)})
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("segment::network_def")
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or err.__context__
    assert any("`head` is 'unet3000'" in m for m in chain)


def test_paper_json_builds_the_paper_head_and_schedule(tmp_path, tiny_slices):
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "paper.json")])
    parser.update({"dataset_dir": tiny_slices, "bundle_root": str(tmp_path)})
    net = parser.get_parsed_content("segment::network_def")
    assert isinstance(net, ObjectContextualNet)
    assert net.head.pixel.conv.out_channels == 512 and net.head.key_channels == 256
    scheduler = parser.get_parsed_content("segment::lr_scheduler")
    assert scheduler.total_iters == 80000
    assert isinstance(parser.get_parsed_content("segment::optimizer"), torch.optim.SGD)


def test_two_cpu_ranks_train_the_same_ocr_weights(tmp_path, tiny_slices):
    args = ["--dataset_dir", tiny_slices, "--head", "ocr"]
    for key, value in {**TINY, "batch_size": 2}.items():
        args += [f"--{key}", json.dumps(value).replace(" ", "")]
    files = [os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "multi_gpu_train.json")]
    rank0, rank1 = run_two_cpu_ranks(str(tmp_path), files, META, str(tmp_path), args, network="segment::network")
    assert rank0.keys() == rank1.keys()
    # parameters are identical; BatchNorm running statistics are broadcast from rank 0 before every forward
    params = [k for k in rank0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.allclose(rank0[k], rank1[k]) for k in params)
    assert os.path.isfile(tmp_path / "models_rank0" / "model.pt")
    assert not os.path.exists(tmp_path / "models_rank1" / "model.pt")
