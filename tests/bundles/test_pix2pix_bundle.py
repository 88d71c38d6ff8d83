"""End-to-end tests of bundles/pix2pix_microscopy_synthesis on the real nuclei tiles (conftest.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, run_two_cpu_ranks
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import LoadImage

from monai_wsss.data import load_semisupervised_datalist
from monai_wsss.networks import MaskToImageGenerator

BUNDLE = os.path.join(REPO, "bundles", "pix2pix_microscopy_synthesis")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
SMALL = {
    "roi_size": [32, 32],
    "generator_channels": [8, 16, 32],
    "discriminator_channels": 8,
    "batch_size": 2,
    "segment::networks::plain::channels": [4, 8, 16],
    "segment::networks::plain::strides": [2, 2],
    "segment::batch_size": 2,
}


def _dirs(tmp: str) -> dict:
    return {
        "ckpt_dir": os.path.join(tmp, "models"),
        "output_dir": os.path.join(tmp, "outputs"),
        "segment::output_dir": os.path.join(tmp, "seg_eval"),
        "segment::ckpt_dir": os.path.join(tmp, "models", "segmenter_real"),
    }


def _run(configs: list[str], tmp: str, dataset_dir: str, **kw) -> ConfigWorkflow:
    files = [os.path.join(CONFIGS, c) for c in configs]
    parser = ConfigParser()
    parser.read_config(files)
    over = {k: v for k, v in dict(SMALL, **_dirs(tmp)).items() if k in parser}  # only keys these configs define
    over.update(dataset_dir=dataset_dir, **kw)
    wf = ConfigWorkflow(
        config_file=files,
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        **over,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def _metrics(path: str) -> dict[str, str]:
    with open(path) as f:
        return {row[0]: row[1] for row in csv.reader(f) if row}


def test_train_synthesize_segment_evaluate(tmp_path, nuclei_dataset):
    tmp = str(tmp_path)
    wf = _run(["train.json"], tmp, nuclei_dataset, num_epochs=2, epoch_length=3, val_interval=1)
    trainer = wf.parser.get_parsed_content("train::trainer")
    assert trainer.state.iteration == 6
    assert os.path.isfile(f"{tmp}/models/model.pt")
    with open(f"{tmp}/outputs/learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {"loss", "loss_l1", "loss_d", "loss_g_adv"} <= set(rows[0])
    assert os.path.getsize(f"{tmp}/outputs/validation_grid.png") > 0
    # constant-then-linear schedule stepped once per epoch: 1 constant epoch (2e-4), 1 decay epoch (1e-4), then 0
    sched = wf.parser.get_parsed_content("g_lr_scheduler")
    assert sched.last_epoch == 2 and [sched._factor(e) for e in range(3)] == [1.0, 0.5, 0.0]
    assert wf.parser.get_parsed_content("g_optimizer").param_groups[0]["lr"] == 0.0

    _run(["train.json", "synthesize.json"], tmp, nuclei_dataset, **{"synthesize::num_pairs": 5})
    syn = f"{tmp}/outputs/synthetic"
    meta = json.load(open(f"{syn}/dataset.json"))
    assert meta["numSynthetic"] == 5 and meta["numTraining"] == 5 + 12 and meta["numTest"] == 4
    assert os.path.getsize(f"{tmp}/outputs/synthetic_grid.png") > 0
    lists = load_semisupervised_datalist(syn, fully_labeled_fraction=None, val_fraction=0.0)
    assert len(lists["labeled"]) == 17 and len(lists["test"]) == 4
    image = LoadImage(image_only=True, ensure_channel_first=True)(os.path.join(syn, meta["training"][0]["image"]))
    assert image.shape == (1, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 255

    # the synthetic folder trains the segmenter (the shared segment:: section) with one override (dataset_dir),
    # evaluated on the real test tiles
    seg = {"segment::num_epochs": 1, "segment::epoch_length": 2}
    wf = _run(["train.json", "segment.json"], tmp, nuclei_dataset, **seg)
    assert wf.parser.get_parsed_content("segment::trainer").state.iteration == 2
    real = _metrics(f"{tmp}/seg_eval/metrics.csv")
    synthetic = {
        "segment::name": "synthetic",
        "segment::output_dir": f"{tmp}/seg_syn",
        "segment::ckpt_dir": f"{tmp}/models/segmenter_synthetic",
    }
    _run(["train.json", "segment.json"], tmp, syn, **synthetic, **seg)
    mixed = _metrics(f"{tmp}/seg_syn/metrics.csv")
    for m in (real, mixed):
        assert 0.0 <= float(m["dice"]) <= 1.0
        assert {"dice", "dice_per_class", "jaccard", "miou"} <= set(m)
    assert len(os.listdir(f"{tmp}/seg_syn")) >= 4  # metrics, learning curve, overlays of the 4 test tiles
    assert len([f for f in os.listdir(f"{tmp}/seg_syn") if f.endswith("_overlay.png")]) == 4
    assert os.path.isfile(f"{tmp}/models/segmenter_synthetic/model.pt")

    _run(["train.json", "segment.json", "evaluate.json"], tmp, nuclei_dataset, output_dir=f"{tmp}/eval")
    ev = _metrics(f"{tmp}/eval/metrics.csv")
    assert set(ev) >= {"ssim", "psnr", "mae", "feature_distance", "feature_fid"}
    assert -1 <= float(ev["ssim"]) <= 1 and float(ev["feature_distance"]) > 0
    assert os.path.getsize(f"{tmp}/eval/heldout_grid.png") > 0


def test_mask_gan_section_trains_and_feeds_synthesis(tmp_path, nuclei_dataset):
    """train_masks.json (the masks:: section) trains the latent mask GAN; synthesis draws its masks with one
    override (synthesize::synthesizer::masks = @masks::generated)."""
    tmp = str(tmp_path)
    _run(["train.json"], tmp, nuclei_dataset, num_epochs=1, epoch_length=1, val_interval=5)
    masks = {"masks::num_epochs": 1, "masks::epoch_length": 2, "masks::batch_size": 2}
    wf = _run(["train.json", "train_masks.json"], tmp, nuclei_dataset, **masks)
    assert wf.parser.get_parsed_content("masks::trainer").state.iteration == 2
    assert os.path.isfile(f"{tmp}/models/mask_gan/model.pt")
    with open(f"{tmp}/outputs/mask_gan_curve.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    over = {"synthesize::num_pairs": 3, "synthesize::synthesizer::masks": "@masks::generated"}
    _run(["train.json", "train_masks.json", "synthesize.json"], tmp, nuclei_dataset, **over)
    meta = json.load(open(f"{tmp}/outputs/synthetic/dataset.json"))
    assert meta["numSynthetic"] == 3 and meta["numTraining"] == 3 + 12


def test_resume_continues_epochs(tmp_path, nuclei_dataset):
    tmp = str(tmp_path)
    _run(["train.json"], tmp, nuclei_dataset, num_epochs=1, epoch_length=2, val_interval=5)
    wf = _run(["train.json"], tmp, nuclei_dataset, num_epochs=2, epoch_length=2, val_interval=5)
    trainer = wf.parser.get_parsed_content("train::trainer")
    assert trainer.state.epoch == 2 and trainer.state.iteration == 4
    with open(f"{tmp}/outputs/learning_curve.csv") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_rgb_grey_coded_folder_needs_only_dataset_dir(tmp_path, coded_rgb_dataset):
    """Blood-smear-like data: RGB images, three classes stored as 0/128/255 with stray values."""
    tmp = str(tmp_path)
    wf = _run(["train.json"], tmp, coded_rgb_dataset, num_epochs=1, epoch_length=1)
    assert wf.parser.get_parsed_content("num_classes") == 3
    assert wf.parser.get_parsed_content("image_channels") == 3
    batch = next(iter(wf.parser.get_parsed_content("train::dataloader")))
    assert batch["image"].shape[1] == 3 and set(torch.unique(batch["label"]).tolist()) <= {0, 1, 2}
    assert wf.parser.get_parsed_content("heldout_data") == wf.parser.get_parsed_content("datalist")["test"]
    _run(["train.json", "synthesize.json"], tmp, coded_rgb_dataset, **{"synthesize::num_pairs": 2})
    meta = json.load(open(f"{tmp}/outputs/synthetic/dataset.json"))
    first = os.path.join(tmp, "outputs", "synthetic", meta["training"][0]["image"])
    img = LoadImage(image_only=True, ensure_channel_first=True)(first)
    assert img.shape[0] == 3
    # real items keep their extra keys ("subset") in the datalist; training batches mix them with synthetic ones
    assert meta["training"][-1]["subset"] == "tiles" and "subset" not in meta["training"][0]
    _run(
        ["train.json", "segment.json"],
        tmp,
        f"{tmp}/outputs/synthetic",
        **{
            "segment::num_epochs": 1,
            "segment::epoch_length": 3,
            "segment::batch_size": 3,
            "segment::name": "synthetic",
        },
    )
    assert os.path.isfile(f"{tmp}/seg_eval/metrics.csv")


def test_masks_with_unexpected_labels_fail_clearly(tmp_path, nuclei_dataset):
    from PIL import Image

    bad = tmp_path / "bad"
    os.makedirs(bad / "images")
    os.makedirs(bad / "masks")
    meta = json.load(open(os.path.join(nuclei_dataset, "dataset.json")))
    items = []
    for i, item in enumerate(meta["training"][:3]):
        Image.open(os.path.join(nuclei_dataset, item["image"])).save(bad / "images" / f"{i}.png")
        m = (np.asarray(Image.open(os.path.join(nuclei_dataset, item["label"]))) > 0).astype(np.uint8)
        if i == 1:
            m[:4, :4] = 5  # not a declared class, not a grey code of two classes either
        Image.fromarray(m).save(bad / "masks" / f"{i}.png")
        items.append({"image": f"images/{i}.png", "label": f"masks/{i}.png"})
    (bad / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "nucleus"}, "training": items}))
    with pytest.raises(Exception) as info:
        _run(["train.json"], str(tmp_path), str(bad), num_epochs=1, epoch_length=1)
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("masks/1.png" in m and "not among the declared labels" in m for m in chain), chain[-1]


def test_cli_train(tmp_path, nuclei_dataset):
    tmp = str(tmp_path)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "train.json")]
    cmd += ["--meta_file", META, "--bundle_root", BUNDLE, "--dataset_dir", nuclei_dataset]
    cmd += ["--roi_size", "[32,32]", "--generator_channels", "[8,16,32]", "--discriminator_channels", "8"]
    cmd += ["--num_epochs", "1", "--epoch_length", "1", "--ckpt_dir", f"{tmp}/models", "--output_dir", f"{tmp}/out"]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(f"{tmp}/models/model.pt", weights_only=True)
    assert any(k.startswith("unet.") for k in state)


def test_verify_net_in_out_and_metadata():
    from monai.bundle import verify_metadata, verify_net_in_out

    verify_net_in_out(
        net_id="generator_def",
        meta_file=META,
        config_file=os.path.join(CONFIGS, "train.json"),
        n=2,
        device="cpu",
        num_classes=2,
        image_channels=1,
        generator_channels=[4, 8, 16],
    )
    verify_metadata(meta_file=META, filepath=SCHEMA)


def test_paper_override_holds_the_pix2pix_schedule():
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "paper.json")])
    assert parser.get_parsed_content("learning_rate") == 2e-4 and parser.get_parsed_content("beta1") == 0.5
    assert parser.get_parsed_content("lambda_l1") == 100.0 and parser.get_parsed_content("gan_criterion") == "bce"
    assert parser.get_parsed_content("num_epochs") == 200 and parser.get_parsed_content("constant_epochs") == 100
    assert parser.get_parsed_content("batch_size") == 1 and parser.get_parsed_content("dropout") == 0.5
    assert parser.get_parsed_content("roi_size") == [256, 256]
    assert parser.get_parsed_content("generator_channels") == [64, 128, 256, 512, 512, 512, 512, 512]


def test_torchrun_two_cpu_processes(tmp_path, nuclei_dataset):
    """multi_gpu_train.json with 2 CPU processes (gloo): the same generator on both ranks, only rank 0 writes."""
    tmp = str(tmp_path)
    args = ["--dataset_dir", nuclei_dataset, "--roi_size", "[32,32]", "--generator_channels", "[8,16,32]"]
    args += ["--discriminator_channels", "8", "--num_epochs", "2", "--epoch_length", "2", "--batch_size", "2"]
    configs = [f"{CONFIGS}/train.json", f"{CONFIGS}/multi_gpu_train.json"]
    w0, w1 = run_two_cpu_ranks(tmp, configs, META, BUNDLE, args, network="generator_def")
    saved = torch.load(os.path.join(tmp, "models_rank0", "model.pt"), weights_only=True)
    start = MaskToImageGenerator(2, 2, 1, channels=(8, 16, 32), strides=(2, 2)).state_dict()
    assert len(w0) == len(start) == 10
    assert any(not torch.equal(start[k], w0[k]) for k in w0)  # trained
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], msg=f"ranks differ in {k}")
        torch.testing.assert_close(saved[k], w0[k])
    assert not os.path.exists(os.path.join(tmp, "models_rank1"))
