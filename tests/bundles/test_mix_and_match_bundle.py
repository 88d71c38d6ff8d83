"""End-to-end tests of bundles/mix_and_match_pretraining on small real scans (see conftest.py): the proxy task's loss
falls, mix-and-match tunes from its weights, the export loads into the DTC bundle with one --pretrained_weights."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import torch
from conftest import REPO
from monai.bundle import ConfigWorkflow, verify_metadata

BUNDLE = os.path.join(REPO, "bundles", "mix_and_match_pretraining")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")
DTC = os.path.join(REPO, "bundles", "dtc_semisupervised_seg", "configs")


def _small(tmp: str, dataset_dir: str) -> dict:
    return {
        "dataset_dir": dataset_dir,
        "ckpt_dir": os.path.join(tmp, "models"),
        "output_dir": os.path.join(tmp, "outputs"),
        "roi_size": [32, 32, 32],
        "network_def#features": 8,
        "network_def#dropout": 0.0,
        "num_workers": 0,
    }


def _losses(path: str) -> list[float]:
    with open(path) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_proxy_loss_falls_and_mix_and_match_tunes_from_it(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        num_epochs=3,
        epoch_length=6,
        learning_rate=0.003,
        **_small(tmp, tiny_brain_dataset),
    )
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    losses = _losses(os.path.join(tmp, "outputs", "learning_curve.csv"))
    assert len(losses) == 18
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4  # restoration of the swapped patches is learnt
    proxy = torch.load(os.path.join(tmp, "models", "proxy.pt"), weights_only=True)

    mm = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "mix_and_match.json")],
        meta_file=META,
        workflow_type="train",
        bundle_root=BUNDLE,
        **{
            "mix_and_match::num_epochs": 2,
            "mix_and_match::epoch_length": 2,
            "mix_and_match::num_patches": 4,
            "mix_and_match::min_size": 8,
            "mix_and_match::max_size": 20,
            "mix_and_match::roi_size": [16, 16, 16],
            "mix_and_match::max_background_fraction": 0.25,
        },
        **_small(tmp, tiny_brain_dataset),
    )
    mm.initialize()
    loader = next(h for h in mm.parser.get_parsed_content("mix_and_match::handlers") if hasattr(h, "report"))
    mm.run()
    mm.finalize()
    assert len(loader.report["loaded"]) == len(proxy) and loader.report["missing"] == []
    tuned = torch.load(os.path.join(tmp, "models", "mix_and_match.pt"), weights_only=True)
    assert tuned.keys() == proxy.keys()
    changed = [k for k in proxy if k.startswith("backbone.") and not torch.equal(proxy[k], tuned[k])]
    assert changed and all(torch.equal(proxy[k], tuned[k]) for k in ("seg_head.weight", "seg_head.bias"))
    triplet = _losses(os.path.join(tmp, "outputs", "mix_and_match", "learning_curve.csv"))
    assert len(triplet) == 4 and all(0.0 <= v <= 6.1 for v in triplet)


def test_cli_chain_and_dtc_trains_from_the_export(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--meta_file", META, "--bundle_root", BUNDLE, "--ckpt_dir", f"{tmp}/models"]
    small = ["--dataset_dir", tiny_brain_dataset, "--roi_size", "[32,32,32]", "--network_def#features", "8"]
    small += ["--output_dir", f"{tmp}/outputs", "--num_epochs", "1", "--epoch_length", "2"]
    run = [sys.executable, "-m", "monai.bundle", "run", "--config_file"]
    subprocess.run(run + [f"{CONFIGS}/train.json"] + common + small, check=True, env=env, capture_output=True)
    # export without a mix-and-match stage: the proxy weights are the fallback source
    subprocess.run(run + [f"{CONFIGS}/export.json"] + common, check=True, env=env, capture_output=True)
    encoder = f"{tmp}/models/encoder.pt"
    state = torch.load(encoder, weights_only=True)
    proxy = torch.load(f"{tmp}/models/proxy.pt", weights_only=True)
    assert state.keys() == {k for k in proxy if k.startswith("backbone.")}

    # the DTC bundle, one override: its log reports the encoder loaded and the heads left as initialised
    dtc = run + [f"{DTC}/train.json", "--meta_file", f"{DTC}/metadata.json", "--bundle_root", os.path.dirname(DTC)]
    dtc += ["--dataset_dir", tiny_brain_dataset, "--roi_size", "[32,32,32]", "--network_def#features", "8"]
    dtc += ["--num_epochs", "1", "--epoch_length", "1", "--ckpt_dir", f"{tmp}/dtc/models"]
    dtc += ["--output_dir", f"{tmp}/dtc/outputs", "--pretrained_weights", encoder]
    out = subprocess.run(dtc, check=True, env=env, capture_output=True, text=True)
    log = out.stdout + out.stderr
    assert f"Pretrained weights from {encoder}: {len(state)} of the network's {len(state) + 4} tensors loaded" in log
    assert "seg_head.weight, seg_head.bias, sdf_head.weight, sdf_head.bias" in log
    assert os.path.isfile(f"{tmp}/dtc/models/model.pt")
    # a longer run in the same folder resumes its checkpoint: the pretrained weights are not loaded over it
    wf = ConfigWorkflow(
        config_file=os.path.join(DTC, "train.json"),
        meta_file=os.path.join(DTC, "metadata.json"),
        workflow_type="train",
        bundle_root=os.path.dirname(DTC),
        dataset_dir=tiny_brain_dataset,
        pretrained_weights=encoder,
        ckpt_dir=f"{tmp}/dtc/models",
        output_dir=f"{tmp}/dtc/outputs",
        num_epochs=2,
        epoch_length=1,
        **{"network_def#features": 8, "roi_size": [32, 32, 32]},
    )
    wf.initialize()
    handlers = wf.parser.get_parsed_content("train::handlers")
    wf.parser.get_parsed_content("train::trainer")  # attaches the handlers
    loader = next(h for h in handlers if hasattr(h, "report"))
    assert loader.report is None and os.path.basename(loader.skipped_for) == "checkpoint_epoch=1.pt"


def test_wrong_pretrained_file_stops_the_dtc_run_naming_it(tmp_path, tiny_brain_dataset):
    bad = str(tmp_path / "encoder.pt")
    torch.save({"backbone.encoder.0.0.conv.weight": torch.zeros(3, 1, 3, 3, 3)}, bad)
    wf = ConfigWorkflow(
        config_file=os.path.join(DTC, "train.json"),
        meta_file=os.path.join(DTC, "metadata.json"),
        workflow_type="train",
        bundle_root=os.path.dirname(DTC),
        dataset_dir=tiny_brain_dataset,
        pretrained_weights=bad,
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "outputs"),
        **{"network_def#features": 8, "roi_size": [32, 32, 32]},
    )
    wf.initialize()
    try:
        wf.parser.get_parsed_content("train::trainer")
    except Exception as e:  # MONAI wraps the instantiation error; the cause names the file and the tensor
        chain, err = [], e
        while err is not None:
            chain.append(str(err))
            err = err.__cause__ or err.__context__
        text = "\n".join(chain)
        assert bad in text and "backbone.encoder.0.0.conv.weight" in text and "(3, 1, 3, 3, 3)" in text
    else:
        raise AssertionError("a shape mismatch was accepted")


def test_metadata_verifies():
    verify_metadata(meta_file=META, filepath=SCHEMA)


def test_multi_gpu_config_on_two_cpu_ranks(tmp_path, tiny_brain_dataset):
    from conftest import run_two_cpu_ranks

    tmp = str(tmp_path)
    args = ["--dataset_dir", tiny_brain_dataset, "--roi_size", "[32,32,32]", "--network_def#features", "4"]
    args += ["--num_epochs", "1", "--epoch_length", "2", "--batch_size", "1"]
    rank0, rank1 = run_two_cpu_ranks(
        tmp, [f"{CONFIGS}/train.json", f"{CONFIGS}/multi_gpu_train.json"], META, BUNDLE, args
    )
    params = [k for k in rank0 if "running_" not in k and "num_batches" not in k]  # BN statistics stay per rank
    assert rank0.keys() == rank1.keys() and all(torch.allclose(rank0[k], rank1[k]) for k in params)  # DDP
    assert os.path.isfile(f"{tmp}/models_rank0/proxy.pt") and not os.path.exists(f"{tmp}/models_rank1/proxy.pt")
